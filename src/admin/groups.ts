// Admin REST API: groups. (Routes are added by the issue-4 work in progress.)
import type { AdminRouter } from './router.ts';

export function registerGroupsRoutes(admin: AdminRouter): void {
  void admin;
}
