// The hosted login pages: Eta templates under views/<theme>/login/, UI strings under
// views/default/messages/messages_<locale>.json. A custom theme only needs the templates it changes;
// any template it lacks (page, layout or partial) comes from the default theme. Everything rendered
// from data is escaped by Eta's autoescape; the only raw output is the layout's `it.body`, which is
// the page template's own (already escaped) output.
import fs from 'node:fs';
import path from 'node:path';

import { Eta, EtaFileResolutionError } from 'eta';

export type PageName =
  | 'login-username' | 'login-password' | 'login' | 'consent' | 'error' | 'logout-confirm' | 'logged-out' | 'info'
  | 'login-otp' | 'login-config-totp' | 'login-update-password' | 'login-update-profile' | 'terms' | 'login-verify-email'
  | 'login-reset-password' | 'login-action-confirm' | 'login-broker-link' | 'saml-post' | 'register';
export type PageMessage = { type: 'error' | 'warning' | 'info' | 'success'; text: string };
export type PageData = {
  /** Realm id-name, used when there is no display name. */
  realmName: string;
  /** Realm displayName, plain text (displayNameHtml is ignored). */
  realmDisplayName?: string;
  /** Chosen locale, e.g. 'en'. */
  locale: string;
  /** URL of the theme resources folder; the stylesheet is `${resourcesUrl}/login.css`. */
  resourcesUrl: string;
  /** Value of the hidden "csrf" input on every form. */
  csrf?: string;
  /** Form action URLs by name: username, password, login, consent, logout; restart and resetCredentials are GET links. */
  actions?: Record<string, string>;
  /** Prefilled on the username forms, shown on the password page. */
  username?: string;
  /** Show the "Remember me" checkbox (name "rememberMe", value "on"). */
  rememberMeAllowed?: boolean;
  rememberMe?: boolean;
  /** Label "Username or email" instead of "Username". */
  loginWithEmailAllowed?: boolean;
  /** Field errors by input name, already translated. */
  errors?: Record<string, string>;
  /** Extra hidden inputs of the page's form (name -> value). */
  hidden?: Record<string, string>;
  /** OTP page: the devices to choose from (more than one shows a choice). */
  devices?: { id: string; label: string }[];
  /** OTP enrollment: the new secret, its QR code (data: URL) and the device settings to show. */
  otp?: { secret: string; secretSpaced: string; type: string; algorithm: string; digits: number; period: number; counter: number; qrCode: string; userLabel: string };
  /** Update-password page: the authenticator's rules, translated, with the check the browser script runs. */
  checklist?: { rule: string; text: string; check: { kind: string; arg?: string } }[];
  /** A required action the application asked for (kc_action): its page offers "Cancel" (name "cancel-aia", value "true"). */
  isAppInitiatedAction?: boolean;
  /** The language menu (realm internationalization with more than one locale): each language's page link. */
  locales?: { tag: string; label: string; url: string; current: boolean }[];
  /** Registration page: the values typed so far (never the passwords). */
  registration?: { username: string; email: string; firstName: string; lastName: string };
  /** Registration page: the e-mail is the username (no username field). */
  registrationEmailAsUsername?: boolean;
  /** Update-profile page: current or submitted values. */
  profile?: { email: string; firstName: string; lastName: string };
  /** Verify-email page: the address the mail went to. */
  email?: string;
  /** Page-level message, already translated. */
  message?: PageMessage;
  /** Consent page: the client's name. */
  clientName?: string;
  /** Consent page: what is asked for. */
  scopes?: { name: string; description?: string }[];
  /** Optional "Back to application" link. */
  redirectUrl?: string;
  /** Optional "Back to Login" link (error pages of a login in progress). */
  loginUrl?: string;
  /** Login pages: a button per identity provider. */
  identityProviders?: { alias: string; displayName: string; loginUrl: string }[];
  /** Broker link page: the identity provider's display name. */
  providerName?: string;
  /** SAML HTTP-POST binding page: where the hidden inputs go. */
  postUrl?: string;
};
export type PageRenderer = {
  /** A full HTML document. */
  render(theme: string, page: PageName, data: PageData): Promise<string>;
  /** Message lookup with {0} {1} placeholders; falls back to en, then to the key itself. */
  t(locale: string, key: string, ...args: string[]): string;
  /** Locales that have a messages file. */
  locales(): string[];
};

const DEFAULT_THEME = 'default';
const FALLBACK_LOCALE = 'en';
const THEME_NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;
/** Template names as used in layout()/include(): a bare name, optionally './'-prefixed or with '.eta'. */
const TEMPLATE_NAME = /^(?:\.\/)?([a-z0-9][a-z0-9_-]{0,63})(?:\.eta)?$/;
const MESSAGES_FILE = /^messages_([a-zA-Z]{2,3}(?:_[a-zA-Z0-9]{2,8})*)\.json$/;
const PAGES: ReadonlySet<string> = new Set<PageName>([
  'login-username', 'login-password', 'login', 'consent', 'error', 'logout-confirm', 'logged-out', 'info',
  'login-otp', 'login-config-totp', 'login-update-password', 'login-update-profile', 'terms', 'login-verify-email',
  'login-reset-password', 'login-action-confirm', 'login-broker-link', 'saml-post', 'register',
]);
const MESSAGE_TYPES: ReadonlySet<string> = new Set<PageMessage['type']>(['error', 'warning', 'info', 'success']);

type Bundle = { tag: string; messages: Map<string, string> };

/** Security headers for every HTML page (Koa ctx.set compatible map). */
export function pageSecurityHeaders(): Record<string, string> {
  return {
    // No form-action: Chrome applies it to the redirect chain after the login POST, which ends at
    // the application's redirect URI.
    'Content-Security-Policy':
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; base-uri 'none'; object-src 'none'; frame-ancestors 'self'",
    'X-Frame-Options': 'SAMEORIGIN',
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'Cache-Control': 'no-store, must-revalidate, max-age=0',
    'X-Robots-Tag': 'none',
  };
}

export function createPageRenderer(viewsDir: string): PageRenderer {
  const root = path.resolve(viewsDir);
  const bundles = loadBundles(path.join(root, DEFAULT_THEME, 'messages'));
  const engines = new Map<string, Eta>();

  function resolveLocale(locale: string): Bundle {
    const wanted = String(locale).trim().replaceAll('_', '-').toLowerCase();
    return bundles.get(wanted) ?? bundles.get(wanted.split('-')[0] ?? '') ?? (bundles.get(FALLBACK_LOCALE) as Bundle);
  }

  function lookup(bundle: Bundle, key: string, args: string[]): string {
    const text = bundle.messages.get(key) ?? bundles.get(FALLBACK_LOCALE)?.messages.get(key) ?? key;
    return args.length === 0 ? text : text.replace(/\{(\d+)\}/g, (match, i: string) => args[Number(i)] ?? match);
  }

  /** One Eta instance per theme: its own template cache and its own name -> file resolution. */
  function engine(theme: string): Eta {
    const name = THEME_NAME.test(theme) ? theme : DEFAULT_THEME;
    const cached = engines.get(name);
    if (cached) return cached;
    if (name !== DEFAULT_THEME && !isDirectory(path.join(root, name))) return engine(DEFAULT_THEME);

    const dirs = [...new Set([path.join(root, name, 'login'), path.join(root, DEFAULT_THEME, 'login')])];
    const files = new Map<string, string>();
    const eta = new Eta({ views: dirs[0], autoEscape: true, cache: true });
    eta.resolvePath = (template: string): string => {
      const base = TEMPLATE_NAME.exec(template)?.[1];
      if (base === undefined) throw new EtaFileResolutionError(`Invalid template name: ${template}`);
      let file = files.get(base);
      if (file === undefined) {
        file = dirs.map((dir) => path.join(dir, `${base}.eta`)).find((f) => fs.existsSync(f));
        if (file === undefined) throw new EtaFileResolutionError(`Could not find template: ${base}`);
        files.set(base, file);
      }
      return file;
    };
    engines.set(name, eta);
    return eta;
  }

  return {
    async render(theme, page, data) {
      if (!PAGES.has(page)) throw new Error(`Unknown page: ${page}`);
      const bundle = resolveLocale(data.locale);
      const message = data.message
        ? { type: MESSAGE_TYPES.has(data.message.type) ? data.message.type : 'info', text: String(data.message.text) }
        : undefined;
      const view = {
        ...data,
        locale: bundle.tag,
        resourcesUrl: (safeUrl(data.resourcesUrl) ?? '').replace(/\/+$/, ''),
        actions: Object.fromEntries(
          Object.entries(data.actions ?? {}).flatMap(([k, v]) => {
            const url = safeUrl(v);
            return url === undefined ? [] : [[k, url]];
          }),
        ),
        redirectUrl: safeUrl(data.redirectUrl),
        loginUrl: safeUrl(data.loginUrl),
        postUrl: safeUrl(data.postUrl),
        locales: (data.locales ?? []).flatMap((l) => {
          const url = safeUrl(l.url);
          return url === undefined ? [] : [{ ...l, url }];
        }),
        identityProviders: (data.identityProviders ?? []).flatMap((p) => {
          const url = safeUrl(p.loginUrl);
          return url === undefined ? [] : [{ ...p, loginUrl: url }];
        }),
        message,
        t: (key: string, ...args: string[]) => lookup(bundle, key, args),
      };
      return engine(theme).renderAsync(page, view);
    },
    t(locale, key, ...args) {
      return lookup(resolveLocale(locale), key, args);
    },
    locales() {
      return [...bundles.values()].map((b) => b.tag).sort();
    },
  };
}

function loadBundles(dir: string): Map<string, Bundle> {
  const bundles = new Map<string, Bundle>();
  for (const file of fs.readdirSync(dir).sort()) {
    const match = MESSAGES_FILE.exec(file);
    if (!match?.[1]) continue;
    const parsed: unknown = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8'));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error(`${file}: not a JSON object`);
    const messages = new Map<string, string>();
    for (const [key, value] of Object.entries(parsed)) if (typeof value === 'string') messages.set(key, value);
    const tag = match[1].replaceAll('_', '-');
    bundles.set(tag.toLowerCase(), { tag, messages });
  }
  if (!bundles.has(FALLBACK_LOCALE)) throw new Error(`${dir}: messages_${FALLBACK_LOCALE}.json is missing`);
  return bundles;
}

/**
 * URLs put into href/action attributes: http(s) or relative only. Escaping alone does not stop a
 * `javascript:` URL, and browsers ignore control characters and whitespace inside a scheme.
 */
function safeUrl(url: string | undefined): string | undefined {
  if (typeof url !== 'string' || url === '' || /[\u0000-\u0020\u007f]/.test(url)) return undefined;
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(url)?.[1]?.toLowerCase();
  return scheme === undefined || scheme === 'http' || scheme === 'https' ? url : undefined;
}

function isDirectory(dir: string): boolean {
  try {
    return fs.statSync(dir).isDirectory();
  } catch {
    return false;
  }
}
