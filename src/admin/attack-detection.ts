// Admin REST API: attack-detection. (Routes are added by the issue-4 work in progress.)
import type { AdminRouter } from './router.ts';

export function registerAttackDetectionRoutes(admin: AdminRouter): void {
  void admin;
}
