// The hosted login pages: escaping of everything that comes from data, CSRF inputs on every form,
// Keycloak's element ids, locale fallback, theme fallback and the security headers.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createPageRenderer, pageSecurityHeaders } from '../../src/login/pages.ts';
import type { PageData, PageName } from '../../src/login/pages.ts';

const VIEWS = fileURLToPath(new URL('../../views', import.meta.url));
const PAGES: PageName[] = ['login-username', 'login-password', 'login', 'consent', 'error', 'logout-confirm', 'logged-out', 'info'];
const FORM_PAGES: PageName[] = ['login-username', 'login-password', 'login', 'consent', 'logout-confirm'];
const HOSTILE = ['<script>alert(1)</script>', '"><img src=x onerror=alert(1)>', "' onmouseover='x"];
const CSRF = 'csrf-token-Zx9_';

const renderer = createPageRenderer(VIEWS);

function data(overrides: Partial<PageData> = {}): PageData {
  return {
    realmName: 'demo',
    locale: 'en',
    resourcesUrl: '/resources/default',
    csrf: CSRF,
    actions: {
      username: '/realms/demo/login-actions/username?x=1&y=2',
      password: '/realms/demo/login-actions/password',
      login: '/realms/demo/login-actions/authenticate',
      consent: '/realms/demo/login-actions/consent',
      logout: '/realms/demo/protocol/openid-connect/logout/confirm',
      restart: '/realms/demo/login-actions/restart',
    },
    ...overrides,
  };
}

function hostileData(payload: string): PageData {
  return data({
    realmName: payload,
    realmDisplayName: payload,
    username: payload,
    rememberMeAllowed: true,
    errors: { username: payload, password: payload },
    message: { type: 'error', text: payload },
    clientName: payload,
    scopes: [{ name: payload }, { name: 'profile', description: payload }],
    redirectUrl: `https://app.example/cb?q=${encodeURIComponent(payload)}`,
  });
}

const ALLOWED_TAGS = new Set([
  'html', 'head', 'meta', 'title', 'link', 'body', 'div', 'header', 'main', 'h1', 'p', 'span',
  'form', 'input', 'label', 'button', 'ul', 'li', 'a',
]);
const ALLOWED_ATTRS = new Set([
  'lang', 'charset', 'name', 'content', 'rel', 'href', 'class', 'id', 'role', 'action', 'method', 'type', 'value',
  'for', 'autocomplete', 'autocapitalize', 'spellcheck', 'autofocus', 'aria-invalid', 'aria-describedby', 'checked',
]);

/** Every tag and attribute in the document comes from the templates, not from data. */
function assertStructure(html: string): void {
  expect(html.startsWith('<!DOCTYPE html>\n')).toBe(true);
  const body = html.slice('<!DOCTYPE html>'.length);
  const tag = /<\/?([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[^\s=>]+(?:="[^"<>]*")?)*)\s*>/g;
  for (const [, name, attrs] of body.matchAll(tag)) {
    expect(ALLOWED_TAGS, `tag <${name}>`).toContain(name!.toLowerCase());
    for (const [, attr] of (attrs ?? '').matchAll(/\s+([^\s=>]+)(?:="[^"]*")?/g)) {
      expect(ALLOWED_ATTRS, `attribute ${attr} on <${name}>`).toContain(attr!.toLowerCase());
    }
  }
  // Nothing tag-like is left once the template's own tags are removed.
  expect(body.replace(tag, '')).not.toMatch(/[<>]/);
}

/** The opening tag of the element with this id. */
function element(html: string, id: string): string | undefined {
  return new RegExp(`<[a-z]+[^>]*\\sid="${id}"[^>]*>`).exec(html)?.[0];
}

function forms(html: string): string[] {
  return [...html.matchAll(/<form\b[\s\S]*?<\/form>/g)].map((m) => m[0]);
}

describe('escaping', () => {
  for (const page of PAGES) {
    for (const payload of HOSTILE) {
      it(`${page} escapes ${payload}`, async () => {
        const html = await renderer.render('default', page, hostileData(payload));
        expect(html).not.toContain(payload);
        expect(html).not.toMatch(/<script|<img/i);
        assertStructure(html);
        // The realm name is in every page, escaped rather than dropped.
        const escaped = payload.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;')
          .replaceAll('"', '&quot;').replaceAll("'", '&#39;');
        expect(html).toContain(`<div id="kc-header-wrapper" class="kc-realm">${escaped}</div>`);
      });
    }
  }

  it('escapes the username in the value attribute and as text', async () => {
    const payload = '"><img src=x onerror=alert(1)>';
    const user = await renderer.render('default', 'login-username', data({ username: payload }));
    expect(element(user, 'username')).toContain('value="&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"');
    const pass = await renderer.render('default', 'login-password', data({ username: payload }));
    expect(pass).toContain('<span id="kc-attempted-username" class="kc-attempted-username">&quot;&gt;&lt;img src=x onerror=alert(1)&gt;</span>');
  });

  it('escapes consent scope names and descriptions', async () => {
    const html = await renderer.render('default', 'consent', data({
      clientName: '<b>x</b>',
      scopes: [{ name: '<i>n</i>' }, { name: 'email', description: "<u>d</u> ' \"" }],
    }));
    expect(html).toContain('<li class="kc-scope">&lt;i&gt;n&lt;/i&gt;</li>');
    expect(html).toContain('<li class="kc-scope">&lt;u&gt;d&lt;/u&gt; &#39; &quot;</li>');
    expect(html).toContain('<h1 id="kc-page-title" class="kc-title">&lt;b&gt;x&lt;/b&gt; wants to access your account</h1>');
  });

  it('escapes the csrf value and the action URLs', async () => {
    const html = await renderer.render('default', 'login', data({ csrf: '"><x', actions: { login: '/a?b=1&c="2"' } }));
    expect(html).toContain('<input type="hidden" name="csrf" value="&quot;&gt;&lt;x">');
    expect(html).toContain('action="/a?b=1&amp;c=&quot;2&quot;"');
  });

  it('drops links and actions that are not http(s) or relative', async () => {
    for (const bad of ['javascript:alert(1)', 'JavaScript:alert(1)', 'java\tscript:alert(1)', ' javascript:alert(1)', 'data:text/html,x', 'vbscript:x']) {
      const pass = await renderer.render('default', 'login-password', data({ actions: { password: bad, restart: bad } }));
      expect(pass).not.toMatch(/script:|data:/i);
      expect(element(pass, 'reset-login')).toBeUndefined();
      expect(pass).toContain('action=""');
      const error = await renderer.render('default', 'error', data({ redirectUrl: bad }));
      expect(error).not.toMatch(/script:|data:/i);
      expect(element(error, 'backToApplication')).toBeUndefined();
    }
    const ok = await renderer.render('default', 'logged-out', data({ redirectUrl: 'https://app.example/' }));
    expect(element(ok, 'backToApplication')).toContain('href="https://app.example/"');
  });
});

describe('forms', () => {
  for (const page of PAGES) {
    it(`${page}: every form posts and carries the csrf input`, async () => {
      const html = await renderer.render('default', page, data({ rememberMeAllowed: true }));
      const found = forms(html);
      expect(found.length).toBe(FORM_PAGES.includes(page) ? 1 : 0);
      expect(html.match(/<form\b/g)?.length ?? 0).toBe(found.length);
      for (const form of found) {
        expect(form).toMatch(/^<form [^>]*method="post"/);
        expect(form).toContain(`<input type="hidden" name="csrf" value="${CSRF}">`);
      }
    });
  }

  it('login-username', async () => {
    const html = await renderer.render('default', 'login-username', data({ username: 'alice' }));
    const [form] = forms(html);
    expect(form).toMatch(/^<form id="kc-form-login" [^>]*action="\/realms\/demo\/login-actions\/username\?x=1&amp;y=2"/);
    expect(element(html, 'username')).toMatch(/name="username".*value="alice".*autocomplete="username".*autofocus/);
    expect(element(html, 'kc-login')).toMatch(/^<button [^>]*type="submit"/);
    expect(element(html, 'password')).toBeUndefined();
    expect(element(html, 'rememberMe')).toBeUndefined();
    expect(html).toContain('<label for="username" class="kc-label">Username</label>');
  });

  it('login-password', async () => {
    const html = await renderer.render('default', 'login-password', data({ username: 'alice' }));
    expect(forms(html)[0]).toMatch(/action="\/realms\/demo\/login-actions\/password"/);
    expect(html).toContain('<input type="hidden" name="username" value="alice" autocomplete="username">');
    expect(element(html, 'password')).toMatch(/type="password".*autocomplete="current-password".*autofocus/);
    expect(element(html, 'kc-login')).toBeDefined();
    expect(element(html, 'reset-login')).toContain('href="/realms/demo/login-actions/restart"');
    expect(html).toContain('>Restart login</a>');
    expect(element(html, 'username')).toBeUndefined();
  });

  it('login (single page) autofocuses the first empty field', async () => {
    const empty = await renderer.render('default', 'login', data());
    expect(forms(empty)[0]).toMatch(/action="\/realms\/demo\/login-actions\/authenticate"/);
    expect(element(empty, 'username')).toContain('autofocus');
    expect(element(empty, 'password')).not.toContain('autofocus');
    expect(element(empty, 'kc-login')).toBeDefined();
    const prefilled = await renderer.render('default', 'login', data({ username: 'alice' }));
    expect(element(prefilled, 'username')).not.toContain('autofocus');
    expect(element(prefilled, 'password')).toContain('autofocus');
  });

  it('field errors are linked to their inputs', async () => {
    const html = await renderer.render('default', 'login', data({ username: 'alice', errors: { username: 'Bad user.', password: 'Bad pass.' } }));
    expect(element(html, 'username')).toMatch(/aria-invalid="true" aria-describedby="input-error-username"/);
    expect(element(html, 'password')).toMatch(/aria-invalid="true" aria-describedby="input-error-password"/);
    expect(html).toContain('<span id="input-error-username" class="kc-field-error">Bad user.</span>');
    expect(html).toContain('<span id="input-error-password" class="kc-field-error">Bad pass.</span>');
    // A username error puts the focus back on the username field.
    expect(element(html, 'username')).toContain('autofocus');
    const clean = await renderer.render('default', 'login', data());
    expect(clean).not.toContain('aria-invalid');
    expect(clean).not.toContain('input-error-');
  });

  it('remember me and the email label follow the realm settings', async () => {
    for (const page of ['login-username', 'login-password', 'login'] as const) {
      const off = await renderer.render('default', page, data());
      expect(element(off, 'rememberMe')).toBeUndefined();
      const on = await renderer.render('default', page, data({ rememberMeAllowed: true }));
      expect(element(on, 'rememberMe')).toBe('<input id="rememberMe" name="rememberMe" type="checkbox" value="on">');
      const checked = await renderer.render('default', page, data({ rememberMeAllowed: true, rememberMe: true }));
      expect(element(checked, 'rememberMe')).toContain(' checked>');
    }
    const email = await renderer.render('default', 'login', data({ loginWithEmailAllowed: true }));
    expect(email).toContain('<label for="username" class="kc-label">Username or email</label>');
  });

  it('consent has accept yes/no buttons', async () => {
    const html = await renderer.render('default', 'consent', data({ clientName: 'Agent Desktop', scopes: [{ name: 'email', description: 'Email address' }] }));
    expect(forms(html)[0]).toMatch(/action="\/realms\/demo\/login-actions\/consent"/);
    expect(element(html, 'kc-login')).toMatch(/name="accept" value="yes" type="submit"/);
    expect(element(html, 'kc-cancel')).toMatch(/name="accept" value="no" type="submit"/);
    expect(html).toContain('Agent Desktop wants to access your account');
    expect(html).toContain('<li class="kc-scope">Email address</li>');
  });

  it('logout-confirm posts to the logout action', async () => {
    const html = await renderer.render('default', 'logout-confirm', data());
    expect(forms(html)[0]).toMatch(/action="\/realms\/demo\/protocol\/openid-connect\/logout\/confirm"/);
    expect(element(html, 'kc-logout')).toMatch(/type="submit"/);
    expect(html).toContain('Do you want to log out?');
  });
});

describe('page content', () => {
  it('uses the display name, else the realm name', async () => {
    const named = await renderer.render('default', 'login', data({ realmDisplayName: 'Acme Support' }));
    expect(named).toContain('<div id="kc-header-wrapper" class="kc-realm">Acme Support</div>');
    expect(named).toContain('<title>Sign in to your account - Acme Support</title>');
    const plain = await renderer.render('default', 'login', data());
    expect(plain).toContain('<div id="kc-header-wrapper" class="kc-realm">demo</div>');
  });

  it('links the stylesheet and nothing else', async () => {
    const html = await renderer.render('default', 'login', data({ resourcesUrl: 'https://cdn.example/resources/default/' }));
    expect(html).toContain('<link rel="stylesheet" href="https://cdn.example/resources/default/login.css">');
    expect(html).not.toMatch(/<script|<style|\sstyle=/i);
  });

  it('shows the page message as an alert', async () => {
    const html = await renderer.render('default', 'login', data({ message: { type: 'error', text: 'Invalid username or password.' } }));
    expect(html).toContain('<div id="kc-alert" class="kc-alert kc-alert-error" role="alert">Invalid username or password.</div>');
    const info = await renderer.render('default', 'login', data({ message: { type: 'info', text: 'Hi' } }));
    expect(info).toContain('<div id="kc-alert" class="kc-alert kc-alert-info" role="status">Hi</div>');
    const odd = await renderer.render('default', 'login', data({ message: { type: '"x' as 'info', text: 'Hi' } }));
    expect(odd).toContain('class="kc-alert kc-alert-info"');
  });

  it('error, info and logged-out pages', async () => {
    const error = await renderer.render('default', 'error', data({ message: { type: 'error', text: 'Invalid request.' } }));
    expect(error).toContain('We are sorry...');
    expect(error).toContain('Invalid request.');
    const info = await renderer.render('default', 'info', data({ message: { type: 'info', text: 'Done.' }, redirectUrl: '/app' }));
    expect(info).toContain('Done.');
    expect(element(info, 'backToApplication')).toContain('href="/app"');
    const out = await renderer.render('default', 'logged-out', data());
    expect(out).toContain('You are logged out.');
    expect(element(out, 'backToApplication')).toBeUndefined();
  });
});

describe('locales', () => {
  it('renders German for de and regional variants', async () => {
    for (const locale of ['de', 'de-AT', 'de_CH', 'DE']) {
      const html = await renderer.render('default', 'login', data({ locale, loginWithEmailAllowed: true }));
      expect(html).toContain('<html lang="de">');
      expect(html).toContain('Benutzername oder E-Mail');
      expect(html).toContain('Passwort');
      expect(html).toContain('>Anmelden</button>');
    }
    expect(await renderer.render('default', 'logged-out', data({ locale: 'de' }))).toContain('Sie sind abgemeldet.');
  });

  it('falls back to English for unknown locales', async () => {
    for (const locale of ['xx', '', 'en-GB', '"><script>', '__proto__']) {
      const html = await renderer.render('default', 'login', data({ locale }));
      expect(html).toContain('<html lang="en">');
      expect(html).toContain('>Sign In</button>');
    }
  });

  it('t() substitutes placeholders once, falls back to the key', () => {
    expect(renderer.t('en', 'invalidUserMessage')).toBe('Invalid username or password.');
    expect(renderer.t('de', 'invalidUserMessage')).toBe('Ungültiger Benutzername oder ungültiges Passwort.');
    expect(renderer.t('en', 'oauthGrantHeader', '{1}', 'B')).toBe('{1} wants to access your account');
    expect(renderer.t('de', 'noSuchKey')).toBe('noSuchKey');
    expect(renderer.t('en', '__proto__')).toBe('__proto__');
    expect(renderer.t('en', 'constructor')).toBe('constructor');
    expect(renderer.locales()).toEqual(['de', 'en']);
  });

  it('de and en define the same keys, and every key the templates use', () => {
    const read = (l: string) => JSON.parse(fs.readFileSync(path.join(VIEWS, 'default/messages', `messages_${l}.json`), 'utf8')) as Record<string, string>;
    const en = read('en');
    const de = read('de');
    expect(Object.keys(de).sort()).toEqual(Object.keys(en).sort());
    for (const file of fs.readdirSync(path.join(VIEWS, 'default/login'))) {
      const source = fs.readFileSync(path.join(VIEWS, 'default/login', file), 'utf8');
      for (const [, key] of source.matchAll(/it\.t\('([^']+)'/g)) expect(en, `${file}: ${key}`).toHaveProperty([key!]);
      // Raw output only for the layout's body and for partials (themselves escaped templates).
      expect(source, file).not.toMatch(/<%~(?!\s*(?:it\.body\s*%>|include\('[\w-]+', ))/);
    }
    for (const key of [
      'invalidUserMessage', 'missingUsernameMessage', 'missingPasswordMessage', 'cookieNotFoundMessage', 'expiredActionMessage',
      'accountDisabledMessage', 'invalidRequestMessage', 'logoutConfirmHeader', 'successLogout', 'backToApplication',
      'restartLoginTooltip', 'rememberMe', 'usernameOrEmail', 'username', 'password', 'doLogIn', 'loginAccountTitle',
      'consentDenied', 'oauthGrantTitle', 'doYes', 'doNo', 'errorTitle', 'pageExpiredMessage1', 'doLogout', 'loginTimeout',
    ]) expect(en).toHaveProperty([key]);
  });

  describe('with other message files', () => {
    let dir: string;
    beforeAll(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cloakroom-views-'));
      fs.cpSync(path.join(VIEWS, 'default'), path.join(dir, 'default'), { recursive: true });
      fs.writeFileSync(path.join(dir, 'default/messages/messages_de.json'), JSON.stringify({ username: 'Benutzername' }));
      fs.writeFileSync(path.join(dir, 'default/messages/messages_pt_BR.json'), JSON.stringify({ password: 'Senha', n: 3 }));
    });
    afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

    it('falls back to English per key and knows region locales', async () => {
      const r = createPageRenderer(dir);
      expect(r.locales()).toEqual(['de', 'en', 'pt-BR']);
      expect(r.t('de', 'username')).toBe('Benutzername');
      expect(r.t('de', 'password')).toBe('Password');
      expect(r.t('pt-br', 'password')).toBe('Senha');
      expect(r.t('pt_BR', 'n')).toBe('n');
      expect(r.t('pt', 'password')).toBe('Password');
      expect(await r.render('default', 'login', data({ locale: 'pt-BR' }))).toContain('<html lang="pt-BR">');
    });
  });
});

describe('themes', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cloakroom-themes-'));
    fs.cpSync(path.join(VIEWS, 'default'), path.join(dir, 'default'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'acme/login'), { recursive: true });
    fs.writeFileSync(
      path.join(dir, 'acme/login/login-username.eta'),
      `<% layout('layout', { title: 'Acme' }) %><p id="acme-page"><%= it.username %></p>`,
    );
    fs.mkdirSync(path.join(dir, 'framed/login'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'framed/login/layout.eta'), `<div id="framed"><%~ it.body %></div>`);
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('uses a custom theme template and escapes in it', async () => {
    const r = createPageRenderer(dir);
    const html = await r.render('acme', 'login-username', data({ username: '<b>' }));
    expect(html).toContain('<p id="acme-page">&lt;b&gt;</p>');
    // The page's layout() call found the default layout.
    expect(html).toContain('<title>Acme - demo</title>');
  });

  it('falls back to the default theme for templates the custom theme lacks', async () => {
    const r = createPageRenderer(dir);
    const html = await r.render('acme', 'login-password', data());
    expect(html).toBe(await r.render('default', 'login-password', data()));
  });

  it('applies a custom layout to default pages', async () => {
    const r = createPageRenderer(dir);
    const html = await r.render('framed', 'login', data());
    expect(html.startsWith('<div id="framed"><form id="kc-form-login"')).toBe(true);
  });

  it('uses the default theme for bad or unknown theme names', async () => {
    const r = createPageRenderer(dir);
    const expected = await r.render('default', 'login-username', data());
    for (const theme of ['../acme', 'Acme', '', '.acme', 'acme/../acme', `a${'b'.repeat(64)}`, 'nonexistent', '__proto__']) {
      expect(await r.render(theme, 'login-username', data()), theme).toBe(expected);
    }
  });

  it('rejects unknown page names', async () => {
    await expect(renderer.render('default', '../../etc/passwd' as PageName, data())).rejects.toThrow(/Unknown page/);
  });
});

describe('pageSecurityHeaders', () => {
  it('returns the page headers', () => {
    const headers = pageSecurityHeaders();
    expect(headers).toEqual({
      'Content-Security-Policy':
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; base-uri 'none'; object-src 'none'; frame-ancestors 'self'",
      'X-Frame-Options': 'SAMEORIGIN',
      'X-Content-Type-Options': 'nosniff',
      'Referrer-Policy': 'no-referrer',
      'Cache-Control': 'no-store, must-revalidate, max-age=0',
      'X-Robots-Tag': 'none',
    });
    expect(headers['Content-Security-Policy']).not.toContain('form-action');
    // A fresh object each time: callers may modify it.
    headers['X-Frame-Options'] = 'DENY';
    expect(pageSecurityHeaders()['X-Frame-Options']).toBe('SAMEORIGIN');
  });
});
