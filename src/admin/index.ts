// The Admin REST API: every resource module's routes on one router.
import { registerAccessKeysRoutes } from './access-keys.ts';
import { registerAttackDetectionRoutes } from './attack-detection.ts';
import { registerClientScopesRoutes } from './client-scopes.ts';
import { registerClientsRoutes } from './clients.ts';
import { registerComponentsRoutes } from './components.ts';
import { registerEventsRoutes } from './events.ts';
import { registerFinesseRoutes } from './finesse.ts';
import { registerGroupsRoutes } from './groups.ts';
import { registerIdentityProvidersRoutes } from './identity-providers.ts';
import { registerLoginAuthenticatorRoutes } from './login-authenticators.ts';
import { registerRealmTransferRoutes } from './realm-transfer.ts';
import { registerRealmsRoutes } from './realms.ts';
import { registerRequiredActionRoutes } from './required-actions.ts';
import { registerRoleMappingsRoutes } from './role-mappings.ts';
import { registerRolesRoutes } from './roles.ts';
import { AdminRouter, type AdminServices } from './router.ts';
import { registerServerInfoRoutes } from './serverinfo.ts';
import { registerSmtpRoutes } from './smtp.ts';
import { registerUsersRoutes } from './users.ts';
import { registerUserStorageRoutes } from './user-storage.ts';

export function createAdminApi(services: AdminServices): AdminRouter {
  const admin = new AdminRouter(services);
  registerRealmsRoutes(admin);
  registerServerInfoRoutes(admin);
  registerUsersRoutes(admin);
  registerAccessKeysRoutes(admin);
  registerGroupsRoutes(admin);
  registerRolesRoutes(admin);
  registerRoleMappingsRoutes(admin);
  registerClientsRoutes(admin);
  registerClientScopesRoutes(admin);
  registerIdentityProvidersRoutes(admin);
  registerComponentsRoutes(admin);
  registerEventsRoutes(admin);
  registerAttackDetectionRoutes(admin);
  registerRequiredActionRoutes(admin);
  registerLoginAuthenticatorRoutes(admin);
  registerRealmTransferRoutes(admin);
  registerSmtpRoutes(admin);
  registerUserStorageRoutes(admin);
  registerFinesseRoutes(admin);
  return admin;
}
