// Admin REST API: users. (Routes are added by the issue-4 work in progress.)
import type { AdminRouter } from './router.ts';

export function registerUsersRoutes(admin: AdminRouter): void {
  void admin;
}
