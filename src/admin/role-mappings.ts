// Admin REST API: role-mappings. (Routes are added by the issue-4 work in progress.)
import type { AdminRouter } from './router.ts';

export function registerRoleMappingsRoutes(admin: AdminRouter): void {
  void admin;
}
