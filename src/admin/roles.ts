// Admin REST API: roles. (Routes are added by the issue-4 work in progress.)
import type { AdminRouter } from './router.ts';

export function registerRolesRoutes(admin: AdminRouter): void {
  void admin;
}
