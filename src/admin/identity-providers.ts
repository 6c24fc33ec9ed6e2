// Admin REST API: identity-providers. (Routes are added by the issue-4 work in progress.)
import type { AdminRouter } from './router.ts';

export function registerIdentityProvidersRoutes(admin: AdminRouter): void {
  void admin;
}
