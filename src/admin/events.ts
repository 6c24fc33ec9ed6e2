// Admin REST API: events. (Routes are added by the issue-4 work in progress.)
import type { AdminRouter } from './router.ts';

export function registerEventsRoutes(admin: AdminRouter): void {
  void admin;
}
