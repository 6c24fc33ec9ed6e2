// Admin REST API: components. (Routes are added by the issue-4 work in progress.)
import type { AdminRouter } from './router.ts';

export function registerComponentsRoutes(admin: AdminRouter): void {
  void admin;
}
