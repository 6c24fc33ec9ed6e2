// Realm e-mail: renders a template (subject from the message bundle, an HTML and a plain-text part
// from Eta templates under views/<theme>/email/{html,text}/) and sends it over SMTP with the
// realm's `smtpServer` settings. A custom e-mail theme only needs the files it changes; the rest
// (templates and message keys) come from the default theme. The HTML part is rendered with
// autoescape; the text part is not HTML and is rendered without escaping.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

import { Eta, EtaFileResolutionError } from 'eta';
import type { Transporter as MailTransporter } from 'nodemailer';
import type SMTPTransport from 'nodemailer/lib/smtp-transport/index.js';

import type { Logger } from '../observability/logger.ts';
import type { RealmContext } from '../realms/context.ts';
import { isSmtpMap, smtpSecret } from './smtp-config.ts';
import { SmtpTokens, type SmtpTokenSource } from './smtp-tokens.ts';

// nodemailer is loaded at the first mail, not at server start (idle memory).
const requireModule = createRequire(import.meta.url);
const nodemailer = (): typeof import('nodemailer') => requireModule('nodemailer') as typeof import('nodemailer');

export type EmailTemplate = 'password-reset' | 'execute-actions' | 'email-verification' | 'password-updated' | 'email-test';
export type MailMessage = {
  /** Recipient address. */
  to: string;
  template: EmailTemplate;
  /** 'en', 'de' ... (falls back to en). */
  locale: string;
  data: EmailData;
};
export type EmailData = {
  realmName: string;
  realmDisplayName?: string;
  user?: { username: string; firstName?: string | null; lastName?: string | null; email?: string | null };
  /** Absolute http(s) URL (reset / action / verification link). */
  link?: string;
  /** Shown as "This link will expire within N minutes." (hours or days when it divides evenly, as Keycloak). */
  linkExpirationMinutes?: number;
  /** Required action aliases, shown with their display names (UPDATE_PASSWORD -> "Update Password"). */
  requiredActions?: string[];
};

/** Sending failed: not configured, refused by the server, timeout, unusable settings... */
export class MailError extends Error {}

export type SmtpSettings = {
  host: string;
  port: number;
  from: string;
  fromDisplayName?: string;
  replyTo?: string;
  replyToDisplayName?: string;
  envelopeFrom?: string;
  /** Implicit TLS (Keycloak `ssl`). */
  ssl: boolean;
  /** STARTTLS required (Keycloak `starttls`); off means plain SMTP, as in Keycloak. */
  starttls: boolean;
  auth: boolean;
  /** Keycloak's `authType`: `basic` (user and password) or `token` (XOAUTH2 with a client-credentials token). */
  authType: 'basic' | 'token';
  user?: string;
  password?: string;
  /** Where the XOAUTH2 access token comes from (authType token). */
  tokenSource?: SmtpTokenSource;
};

const DEFAULT_THEME = 'default';
const FALLBACK_LOCALE = 'en';
const THEME_NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const TEMPLATE_NAME = /^(?:\.\/)?([a-z0-9][a-z0-9_-]{0,63})(?:\.eta)?$/;
const MESSAGES_FILE = /^email_([a-zA-Z]{2,3}(?:_[a-zA-Z0-9]{2,8})*)\.json$/;
const TEMPLATES: ReadonlySet<string> = new Set<EmailTemplate>(['password-reset', 'execute-actions', 'email-verification', 'password-updated', 'email-test']);
const LINK_TEMPLATES: ReadonlySet<string> = new Set<EmailTemplate>(['password-reset', 'execute-actions', 'email-verification']);
/** Message key prefix of each template (Keycloak's names): `${prefix}Subject`, `${prefix}Body`. */
const MESSAGE_PREFIX: Record<EmailTemplate, string> = {
  'password-reset': 'passwordReset',
  'execute-actions': 'executeActions',
  'email-verification': 'emailVerification',
  'password-updated': 'passwordUpdated',
  'email-test': 'emailTest',
};

// A dead SMTP server must not hold a request for long.
const CONNECTION_TIMEOUT_MS = 10_000;
const GREETING_TIMEOUT_MS = 10_000;
const SOCKET_TIMEOUT_MS = 20_000;
const DNS_TIMEOUT_MS = 10_000;
/** Cached transports (one per distinct settings); the oldest is dropped beyond this. */
const TRANSPORT_CACHE_SIZE = 256;

const text = (value: unknown): string | undefined => {
  if (typeof value === 'string') return value.trim() === '' ? undefined : value.trim();
  return typeof value === 'number' || typeof value === 'boolean' ? String(value) : undefined;
};
/** Java's Boolean.parseBoolean, which Keycloak applies to the string values. */
const flag = (value: unknown): boolean => text(value)?.toLowerCase() === 'true';

/**
 * Keycloak's realm `smtpServer` map (string values; the password plain, masked or sealed under
 * `passwordSealed`) -> settings; undefined when it has no host or no from address. Throws
 * MailError for values that cannot work (port, a sealed password that does not open).
 */
export function smtpSettings(smtpServer: unknown, openSecret: (sealed: string) => string): SmtpSettings | undefined {
  if (!isSmtpMap(smtpServer)) return undefined;
  const host = text(smtpServer.host);
  const from = text(smtpServer.from);
  if (host === undefined || from === undefined) return undefined;
  const ssl = flag(smtpServer.ssl);
  const portText = text(smtpServer.port);
  const port = portText === undefined ? (ssl ? 465 : 25) : Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new MailError(`invalid SMTP port: ${portText}`);

  const secret = (key: string): string | undefined => {
    try {
      return smtpSecret(smtpServer, key, openSecret);
    } catch (error) {
      throw new MailError(`the stored SMTP ${key} cannot be opened`, { cause: error });
    }
  };
  const password = secret('password');
  const authType = text(smtpServer.authType)?.toLowerCase() ?? 'basic';
  if (authType !== 'basic' && authType !== 'token') throw new MailError(`unknown SMTP authType: ${authType}`);
  const tokenUrl = text(smtpServer.authTokenUrl);
  const clientId = text(smtpServer.authTokenClientId);
  const clientSecret = secret('authTokenClientSecret');
  const tokenSource = tokenUrl !== undefined && clientId !== undefined && clientSecret !== undefined
    ? { url: tokenUrl, clientId, clientSecret, scope: text(smtpServer.authTokenScope) ?? '' } : undefined;

  const optional = (key: string): Record<string, string> => {
    const value = text(smtpServer[key]);
    return value === undefined ? {} : { [key]: value };
  };
  return {
    host, port, from, ssl, starttls: flag(smtpServer.starttls), auth: flag(smtpServer.auth), authType,
    ...optional('fromDisplayName'), ...optional('replyTo'), ...optional('replyToDisplayName'), ...optional('envelopeFrom'),
    ...optional('user'), ...(password !== undefined ? { password } : {}), ...(tokenSource ? { tokenSource } : {}),
  };
}

type Transporter = MailTransporter<SMTPTransport.SentMessageInfo, SMTPTransport.Options>;
type Bundle = Map<string, string>;
type Theme = { html: Eta; text: Eta; bundles: Map<string, Bundle> };
type Paragraph = { text: string; link?: false } | { text: ''; link: true };

export class Mailer {
  readonly #root: string;
  readonly #logger: Logger;
  readonly #themes = new Map<string, Theme>();
  readonly #transports = new Map<string, Transporter>();
  readonly #tokens = new SmtpTokens();

  constructor(options: { viewsDir: string; logger: Logger }) {
    this.#root = path.resolve(options.viewsDir);
    this.#logger = options.logger;
    this.#theme(DEFAULT_THEME); // a broken default theme fails at start, not at the first e-mail
  }

  /** Renders the template and sends it with the realm's smtpServer settings. Throws MailError. */
  async send(realm: RealmContext, message: MailMessage): Promise<void> {
    const settings = smtpSettings((realm.realm.settings as Record<string, unknown>).smtpServer, (sealed) => realm.box.open(sealed));
    if (!settings) throw new MailError('the realm has no SMTP server configured');
    const theme = (realm.settings as { emailTheme?: unknown }).emailTheme;
    await this.sendWith(settings, message, typeof theme === 'string' && theme !== '' ? theme : DEFAULT_THEME);
  }

  /** Same with explicit settings (testSMTPConnection). */
  async sendWith(settings: SmtpSettings, message: MailMessage, theme: string = DEFAULT_THEME): Promise<void> {
    const to = String(message.to ?? '').trim();
    if (!/^[^\s@<>,;"]+@[^\s@<>,;"]+$/.test(to)) throw new MailError('invalid recipient address');
    if (settings.auth && settings.authType === 'basic' && (settings.user === undefined || settings.password === undefined)) {
      throw new MailError('SMTP authentication needs a user and a password');
    }
    if (settings.auth && settings.authType === 'token' && (settings.user === undefined || settings.tokenSource === undefined)) {
      throw new MailError('SMTP token authentication needs a user, authTokenUrl, authTokenClientId and authTokenClientSecret');
    }
    let rendered: { subject: string; text: string; html: string };
    try {
      rendered = await this.render(theme, message);
    } catch (error) {
      this.#logger.error({ err: error, template: message.template, theme }, 'e-mail template failed');
      throw new MailError('the e-mail could not be rendered', { cause: error });
    }
    const address = (address: string, name: string | undefined) => (name ? { name, address } : address);
    const mail = {
      from: address(settings.from, settings.fromDisplayName),
      ...(settings.replyTo ? { replyTo: address(settings.replyTo, settings.replyToDisplayName) } : {}),
      ...(settings.envelopeFrom ? { envelope: { from: settings.envelopeFrom, to: [to] } } : {}),
      to,
      subject: rendered.subject,
      text: rendered.text,
      html: rendered.html,
    };
    try {
      const source = settings.auth && settings.authType === 'token' ? settings.tokenSource : undefined;
      if (!source) {
        await this.#transport(settings).sendMail(mail);
      } else {
        // XOAUTH2 with the cached client-credentials token; a refused one is fetched anew once (Keycloak's retry).
        const send = async (accessToken: string) => this.#transport(settings).sendMail({ ...mail, auth: { user: settings.user!, accessToken } });
        try {
          await send(await this.#tokens.token(source));
        } catch (error) {
          if ((error as { code?: unknown }).code !== 'EAUTH') throw error;
          this.#tokens.forget(source);
          await send(await this.#tokens.token(source));
        }
      }
    } catch (error) {
      this.#logger.warn({ err: error, template: message.template, smtpHost: settings.host, smtpPort: settings.port }, 'sending e-mail failed');
      throw new MailError(`sending e-mail failed: ${(error as Error).message}`, { cause: error });
    }
    this.#logger.info({ template: message.template, smtpHost: settings.host }, 'e-mail sent');
  }

  /** Subject, plain text and HTML of a message (exposed for previews and tests). */
  async render(themeName: string, message: MailMessage): Promise<{ subject: string; text: string; html: string }> {
    const { template, data } = message;
    if (!TEMPLATES.has(template)) throw new Error(`Unknown e-mail template: ${template}`);
    const theme = this.#theme(themeName);
    const bundle = resolveLocale(theme.bundles, message.locale);
    const lookup = (key: string): string | undefined => bundle.messages.get(key) ?? theme.bundles.get(FALLBACK_LOCALE)?.get(key);
    const format = (raw: string, args: string[]): string => raw.replace(/\{(\d+)\}/g, (match, i: string) => args[Number(i)] ?? match);

    const realmName = data.realmDisplayName || data.realmName;
    if (LINK_TEMPLATES.has(template) && !data.link) throw new Error(`The ${template} e-mail needs a link`);
    const link = data.link === undefined ? '' : safeLink(data.link);
    const minutes = data.linkExpirationMinutes ?? 0;
    const expiration = formatExpiration(minutes, (key) => lookup(key) ?? key);
    const actions = (data.requiredActions ?? []).map((alias) => lookup(`requiredAction.${alias}`) ?? alias);
    const args = templateArgs(template, { link, minutes: String(minutes), realmName, expiration, actions: actions.join(', '), when: formatTime(bundle.tag) });

    const t = (key: string, ...given: string[]): string => format(lookup(key) ?? key, given.length > 0 ? given : args);
    /** A body message split at blank lines; a paragraph that is only `{0}` is the link. */
    const paragraphs = (key: string, ...given: string[]): Paragraph[] =>
      (lookup(key) ?? key).split(/\n\s*\n/).map((raw) => raw.trim()).filter((raw) => raw !== '')
        .map((raw): Paragraph => (raw === '{0}' && link !== '' ? { text: '', link: true } : { text: format(raw, given.length > 0 ? given : args) }))
        .filter((p) => p.link || p.text.trim() !== '');

    const prefix = MESSAGE_PREFIX[template];
    // Header values: no line breaks.
    const subject = t(`${prefix}Subject`).replace(/[\r\n]+/g, ' ').trim();
    const user = data.user;
    const userName = user ? [user.firstName, user.lastName].filter((n) => typeof n === 'string' && n.trim() !== '').join(' ') || user.username : '';
    const view = {
      locale: bundle.tag,
      subject,
      realmName,
      user,
      /** "Hello <name>," when the message is for a known user. */
      greeting: userName ? t('emailGreeting', userName) : '',
      link,
      linkExpiration: expiration,
      linkExpirationMinutes: minutes,
      requiredActions: actions,
      args,
      t,
      paragraphs,
    };
    const [html, plain] = await Promise.all([theme.html.renderAsync(template, view), theme.text.renderAsync(template, view)]);
    return { subject, html, text: plain.trim() + '\n' };
  }

  #transport(settings: SmtpSettings): Transporter {
    const key = crypto.createHash('sha256').update(JSON.stringify([
      settings.host, settings.port, settings.ssl, settings.starttls, settings.auth, settings.authType, settings.user ?? '', settings.password ?? '',
    ])).digest('base64url');
    const cached = this.#transports.get(key);
    if (cached) return cached;
    const transport = nodemailer().createTransport({
      host: settings.host,
      port: settings.port,
      secure: settings.ssl,
      requireTLS: settings.starttls,
      // Keycloak speaks plain SMTP unless ssl or starttls is on (no opportunistic STARTTLS).
      ignoreTLS: !settings.ssl && !settings.starttls,
      // Token authentication passes the current access token with each message.
      ...(settings.auth ? { auth: settings.authType === 'token' ? { type: 'OAuth2' as const, user: settings.user! } : { user: settings.user!, pass: settings.password! } } : {}),
      connectionTimeout: CONNECTION_TIMEOUT_MS,
      greetingTimeout: GREETING_TIMEOUT_MS,
      socketTimeout: SOCKET_TIMEOUT_MS,
      dnsTimeout: DNS_TIMEOUT_MS,
      disableFileAccess: true,
      disableUrlAccess: true,
    });
    if (this.#transports.size >= TRANSPORT_CACHE_SIZE) {
      const [oldestKey, oldest] = this.#transports.entries().next().value!;
      this.#transports.delete(oldestKey);
      oldest.close();
    }
    this.#transports.set(key, transport);
    return transport;
  }

  /** One pair of Eta instances (HTML with autoescape, text without) and bundles per theme. */
  #theme(theme: string): Theme {
    const name = THEME_NAME.test(theme) ? theme : DEFAULT_THEME;
    const cached = this.#themes.get(name);
    if (cached) return cached;
    if (name !== DEFAULT_THEME && !isDirectory(path.join(this.#root, name, 'email')) && !isDirectory(path.join(this.#root, name, 'messages'))) {
      return this.#theme(DEFAULT_THEME);
    }
    const themes = [...new Set([name, DEFAULT_THEME])];
    const engine = (part: 'html' | 'text'): Eta => {
      const dirs = themes.map((t) => path.join(this.#root, t, 'email', part));
      const files = new Map<string, string>();
      const eta = new Eta({ views: dirs[dirs.length - 1], autoEscape: part === 'html', cache: true });
      eta.resolvePath = (template: string): string => {
        const base = TEMPLATE_NAME.exec(template)?.[1];
        if (base === undefined) throw new EtaFileResolutionError(`Invalid template name: ${template}`);
        let file = files.get(base);
        if (file === undefined) {
          file = dirs.map((dir) => path.join(dir, `${base}.eta`)).find((f) => fs.existsSync(f));
          if (file === undefined) throw new EtaFileResolutionError(`Could not find template: ${part}/${base}`);
          files.set(base, file);
        }
        return file;
      };
      return eta;
    };
    // The theme's message keys over the default theme's, per locale.
    const bundles = loadBundles(path.join(this.#root, DEFAULT_THEME, 'messages'));
    if (name !== DEFAULT_THEME) {
      for (const [tag, messages] of loadBundles(path.join(this.#root, name, 'messages'))) {
        bundles.set(tag, new Map([...(bundles.get(tag) ?? []), ...messages]));
      }
    }
    if (!bundles.has(FALLBACK_LOCALE)) throw new Error(`${this.#root}: email_${FALLBACK_LOCALE}.json is missing`);
    const loaded: Theme = { html: engine('html'), text: engine('text'), bundles };
    this.#themes.set(name, loaded);
    return loaded;
  }
}

/** The message arguments of each template, in Keycloak's order where Keycloak has the template. */
function templateArgs(template: EmailTemplate, v: { link: string; minutes: string; realmName: string; expiration: string; actions: string; when: string }): string[] {
  switch (template) {
    case 'password-reset':
    case 'email-verification':
      return [v.link, v.minutes, v.realmName, v.expiration];
    case 'execute-actions':
      return [v.link, v.minutes, v.realmName, v.actions, v.expiration];
    case 'password-updated':
      return [v.realmName, v.when];
    case 'email-test':
      return [v.realmName];
  }
}

/** Keycloak's linkExpirationFormatter: the largest of days, hours, minutes that divides evenly. */
function formatExpiration(minutes: number, lookup: (key: string) => string): string {
  const [value, unit] = minutes > 0 && minutes % 1440 === 0 ? [minutes / 1440, 'days']
    : minutes > 0 && minutes % 60 === 0 ? [minutes / 60, 'hours'] : [minutes, 'minutes'];
  const key = `linkExpirationFormatter.timePeriodUnit.${unit}`;
  return `${value} ${value === 1 ? lookup(`${key}.1`) : lookup(key)}`;
}

/** When a notice is sent (the change it reports just happened), in the message's language, UTC. */
function formatTime(locale: string): string {
  try {
    return new Intl.DateTimeFormat(locale, { dateStyle: 'long', timeStyle: 'long', timeZone: 'UTC' }).format(new Date());
  } catch {
    return new Date().toISOString();
  }
}

/** Links go into href attributes and plain text: absolute http(s) only, nothing else. */
function safeLink(link: string): string {
  let url: URL;
  try {
    url = new URL(link);
  } catch {
    throw new MailError('the e-mail link is not an absolute URL');
  }
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || /[\u0000-\u0020\u007f]/.test(link)) {
    throw new MailError('the e-mail link must be an http(s) URL');
  }
  return link;
}

function resolveLocale(bundles: Map<string, Bundle>, locale: string): { tag: string; messages: Bundle } {
  const wanted = String(locale ?? '').trim().replaceAll('_', '-').toLowerCase();
  for (const candidate of [wanted, wanted.split('-')[0] ?? '', FALLBACK_LOCALE]) {
    const messages = bundles.get(candidate);
    if (messages) return { tag: candidate, messages };
  }
  return { tag: FALLBACK_LOCALE, messages: new Map() };
}

function loadBundles(dir: string): Map<string, Bundle> {
  const bundles = new Map<string, Bundle>();
  if (!isDirectory(dir)) return bundles;
  for (const file of fs.readdirSync(dir).sort()) {
    const match = MESSAGES_FILE.exec(file);
    if (!match?.[1]) continue;
    const parsed: unknown = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8'));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error(`${file}: not a JSON object`);
    const messages: Bundle = new Map();
    for (const [key, value] of Object.entries(parsed)) if (typeof value === 'string') messages.set(key, value);
    bundles.set(match[1].replaceAll('_', '-').toLowerCase(), messages);
  }
  return bundles;
}

function isDirectory(dir: string): boolean {
  try {
    return fs.statSync(dir).isDirectory();
  } catch {
    return false;
  }
}
