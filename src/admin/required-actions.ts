// Admin REST API: the realm's required action providers (Keycloak's AuthenticationManagementResource
// required-action endpoints): list, read, update (enabled, default action, priority, name, config),
// delete, raise/lower priority, the providers not registered yet and registering one, and each
// action's configuration (Keycloak 26.3+: max_auth_age on every action but delete_account). The list is
// kept in the realm settings (`requiredActions`, the realm export's field); a write locks the realm
// row, rewrites that one key and drops the realm's cached state (the router's default).
import { sql } from 'kysely';
import { z } from 'zod';

import {
  KNOWN_REQUIRED_ACTIONS, MAX_AUTH_AGE, REQUIRED_ACTION_CONFIG_PROPERTIES, byPriority, isConfigurableRequiredAction, maxAuthAgeError,
  requiredActionProviders, type RequiredActionProvider,
} from '../login/required-actions.ts';
import {
  AdminFieldError, badRequest, conflict, noContent, notFound, ok, type AdminRouter, type RealmRequest,
} from './router.ts';

const int32 = z.number().int().min(-(2 ** 31)).max(2 ** 31 - 1);

/** RequiredActionProviderRepresentation; absent fields keep their value (Keycloak would reset them to false/0). */
const providerUpdateRep = z.object({
  name: z.string().max(255).nullish(),
  enabled: z.boolean().nullish(),
  defaultAction: z.boolean().nullish(),
  priority: int32.nullish(),
  config: z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])).nullish(),
}).loose();

/** RequiredActionConfigRepresentation. */
const configRep = z.object({
  config: z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])).nullish(),
}).loose();

/** RequiredActionProviderSimpleRepresentation. */
const registerRep = z.object({ providerId: z.string().min(1).max(255), name: z.string().max(255).nullish() }).loose();

/** Keycloak's RequiredActionProviderRepresentation (its field order). */
const representation = (p: RequiredActionProvider): RequiredActionProvider => ({
  alias: p.alias, name: p.name, providerId: p.providerId, enabled: p.enabled, defaultAction: p.defaultAction, priority: p.priority, config: p.config,
});

const NOT_FOUND = 'Failed to find required action';

export function registerRequiredActionRoutes(admin: AdminRouter): void {
  const { db } = admin.services;
  const base = '/authentication';
  const options = { permission: 'manage-realm', resourceType: 'REQUIRED_ACTION' } as const;

  /** Reads the realm's list under the realm row's lock, lets `change` edit it, and stores it. */
  async function mutate(req: RealmRequest, change: (list: RequiredActionProvider[]) => RequiredActionProvider[] | undefined): Promise<void> {
    await db.transaction().execute(async (trx) => {
      const row = await trx.selectFrom('realms').select('settings').where('id', '=', req.realm.id).forUpdate().executeTakeFirstOrThrow();
      const list = change(requiredActionProviders(row.settings));
      if (!list) return;
      await trx.updateTable('realms').set({
        settings: sql`jsonb_set(settings, '{requiredActions}', ${JSON.stringify(list.sort(byPriority))}::jsonb)`,
        updated_at: new Date(),
      }).where('id', '=', req.realm.id).execute();
    });
  }

  function find(list: RequiredActionProvider[], alias: string | undefined): RequiredActionProvider {
    const found = list.find((p) => p.alias === alias);
    if (!found) throw notFound(NOT_FOUND);
    return found;
  }

  // The user details page lists them too: users' admins may read the list (Keycloak's requireViewRequiredActions).
  admin.realm('get', `${base}/required-actions`, { permission: ['view-realm', 'view-users'] }, async (req) => {
    return ok(requiredActionProviders(req.realm.settings).map(representation));
  });

  admin.realm('get', `${base}/required-actions/:alias`, { permission: 'view-realm' }, async (req) => {
    return ok(representation(find(requiredActionProviders(req.realm.settings), req.params.alias)));
  });

  admin.realm('put', `${base}/required-actions/:alias`, options, async (req) => {
    const rep = await req.json(providerUpdateRep);
    await mutate(req, (list) => {
      const current = find(list, req.params.alias);
      if (rep.name !== undefined && rep.name !== null) current.name = rep.name;
      if (rep.enabled !== undefined && rep.enabled !== null) current.enabled = rep.enabled;
      if (rep.defaultAction !== undefined && rep.defaultAction !== null) current.defaultAction = rep.defaultAction;
      if (rep.priority !== undefined && rep.priority !== null) current.priority = rep.priority;
      if (rep.config !== undefined && rep.config !== null) {
        current.config = Object.fromEntries(Object.entries(rep.config).flatMap(([k, v]) => (v === null || v === '' ? [] : [[k, String(v)]])));
        const error = maxAuthAgeError(current.config[MAX_AUTH_AGE]);
        if (error) throw new AdminFieldError(MAX_AUTH_AGE, error, [MAX_AUTH_AGE, current.config[MAX_AUTH_AGE] ?? '']);
      }
      return list;
    });
    return noContent();
  });

  admin.realm('delete', `${base}/required-actions/:alias`, options, async (req) => {
    await mutate(req, (list) => {
      const current = find(list, req.params.alias);
      return list.filter((p) => p !== current);
    });
    return noContent();
  });

  // Keycloak swaps the priorities with the neighbour in the sorted list; at either end nothing moves.
  for (const [segment, step] of [['raise-priority', -1], ['lower-priority', 1]] as const) {
    admin.realm('post', `${base}/required-actions/:alias/${segment}`, options, async (req) => {
      await mutate(req, (list) => {
        list.sort(byPriority);
        const current = find(list, req.params.alias);
        const neighbour = list[list.indexOf(current) + step];
        if (!neighbour) return undefined;
        [current.priority, neighbour.priority] = [neighbour.priority, current.priority];
        return list;
      });
      return noContent();
    });
  }

  // --- configuration: a PUT sets the properties an action declares (max_auth_age) ------------
  /** Keycloak looks the path's alias up as a provider id: one that takes configuration. */
  const configurableProvider = (alias: string | undefined): boolean =>
    alias !== undefined && isConfigurableRequiredAction(alias) && KNOWN_REQUIRED_ACTIONS.some((p) => p.providerId === alias);

  /** The registered action the path names: 400 when its provider takes no configuration, 404 when the realm has not registered it. */
  function configurable(list: RequiredActionProvider[], alias: string | undefined): RequiredActionProvider {
    if (!configurableProvider(alias)) throw badRequest('RequiredAction is not configurable');
    const found = list.find((p) => p.alias === alias);
    if (!found) throw notFound('Could not find RequiredAction config');
    return found;
  }

  admin.realm('get', `${base}/required-actions/:alias/config-description`, { permission: 'view-realm' }, async (req) => {
    if (!configurableProvider(req.params.alias)) throw notFound('Could not find configurable RequiredAction provider');
    return ok({ properties: REQUIRED_ACTION_CONFIG_PROPERTIES });
  });

  admin.realm('get', `${base}/required-actions/:alias/config`, { permission: 'view-realm' }, async (req) => {
    return ok({ config: configurable(requiredActionProviders(req.realm.settings), req.params.alias).config });
  });

  admin.realm('put', `${base}/required-actions/:alias/config`, { ...options, resourceType: 'REQUIRED_ACTION_CONFIG' }, async (req) => {
    configurable(requiredActionProviders(req.realm.settings), req.params.alias);
    const rep = await req.json(configRep);
    const given = rep.config?.[MAX_AUTH_AGE];
    const value = given === null || given === undefined || given === '' ? undefined : String(given);
    const error = maxAuthAgeError(value);
    if (error) throw new AdminFieldError(MAX_AUTH_AGE, error, [MAX_AUTH_AGE, value ?? '']);
    await mutate(req, (list) => {
      const current = configurable(list, req.params.alias);
      // Declared properties come from the request (one left out is removed); others stay as stored.
      const { [MAX_AUTH_AGE]: _previous, ...others } = current.config;
      current.config = value === undefined ? others : { ...others, [MAX_AUTH_AGE]: value.trim() };
      return list;
    });
    return noContent();
  });

  admin.realm('delete', `${base}/required-actions/:alias/config`, { ...options, resourceType: 'REQUIRED_ACTION_CONFIG' }, async (req) => {
    await mutate(req, (list) => {
      configurable(list, req.params.alias).config = {};
      return list;
    });
    return noContent();
  });

  admin.realm('get', `${base}/unregistered-required-actions`, { permission: 'view-realm' }, async (req) => {
    const registered = new Set(requiredActionProviders(req.realm.settings).map((p) => p.providerId));
    return ok(KNOWN_REQUIRED_ACTIONS.filter((p) => !registered.has(p.providerId)).map((p) => ({ name: p.name, providerId: p.providerId })));
  });

  admin.realm('post', `${base}/register-required-action`, options, async (req) => {
    const rep = await req.json(registerRep);
    const known = KNOWN_REQUIRED_ACTIONS.find((p) => p.providerId === rep.providerId);
    if (!known) throw badRequest(`Unknown required action provider: ${rep.providerId}`);
    await mutate(req, (list) => {
      if (list.some((p) => p.alias === rep.providerId || p.providerId === rep.providerId)) throw conflict('Required action provider is already registered');
      const last = list.sort(byPriority).at(-1);
      // Keycloak: enabled, not a default action, right after the last one (its priority + 1).
      list.push({
        alias: rep.providerId, name: rep.name ?? known.name, providerId: rep.providerId, enabled: true, defaultAction: false,
        priority: last ? last.priority + 1 : 0, config: {},
      });
      return list;
    });
    return noContent();
  });
}
