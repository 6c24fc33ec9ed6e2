// Admin REST API: client-scopes. (Routes are added by the issue-4 work in progress.)
import type { AdminRouter } from './router.ts';

export function registerClientScopesRoutes(admin: AdminRouter): void {
  void admin;
}
