// Admin REST API: clients. (Routes are added by the issue-4 work in progress.)
import type { AdminRouter } from './router.ts';

export function registerClientsRoutes(admin: AdminRouter): void {
  void admin;
}
