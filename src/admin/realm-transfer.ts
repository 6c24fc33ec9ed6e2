// Admin REST API: realm-transfer. (Routes are added by the issue-4 work in progress.)
import type { AdminRouter } from './router.ts';

export function registerRealmTransferRoutes(admin: AdminRouter): void {
  void admin;
}
