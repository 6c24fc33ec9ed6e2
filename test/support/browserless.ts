// A browser without a browser: follows the authorization redirects and fills in the hosted
// login forms with fetch and a small cookie jar. For tests and the bench's login scenario.

/**
 * Cookies by name and path, as a browser keeps them: two realms of one server both set
 * `_interaction`, each for its own path. Without a URL, header() sends every cookie (last set wins).
 */
export class CookieJar {
  readonly cookies = new Map<string, string>();
  readonly #byPath = new Map<string, { name: string; value: string; path: string }>();

  store(response: Response, url = response.url): void {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq).trim();
      const value = pair!.slice(eq + 1).trim();
      const pathAttribute = attributes.map((a) => a.trim()).find((a) => /^path=/i.test(a))?.slice(5);
      const path = pathAttribute || defaultPath(url);
      const key = `${name}|${path}`;
      if (value === '' || /expires=Thu, 01 Jan 1970/i.test(line) || /max-age=0/i.test(line)) {
        this.cookies.delete(name);
        this.#byPath.delete(key);
      } else {
        this.cookies.set(name, value);
        this.#byPath.set(key, { name, value, path });
      }
    }
  }

  header(url?: string): string {
    if (url === undefined) return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    const pathname = new URL(url).pathname;
    const matching = [...this.#byPath.values()]
      .filter((c) => pathname === c.path || pathname.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`))
      .sort((a, b) => b.path.length - a.path.length);
    return matching.map((c) => `${c.name}=${c.value}`).join('; ');
  }
}

function defaultPath(url: string): string {
  try {
    const { pathname } = new URL(url);
    return pathname.lastIndexOf('/') > 0 ? pathname.slice(0, pathname.lastIndexOf('/')) : '/';
  } catch {
    return '/';
  }
}

export async function get(url: string, jar: CookieJar, headers: Record<string, string> = {}): Promise<Response> {
  const response = await fetch(url, { redirect: 'manual', headers: { cookie: jar.header(url), ...headers } });
  jar.store(response, url);
  return response;
}

export async function post(url: string, form: Record<string, string>, jar: CookieJar, headers: Record<string, string> = {}): Promise<Response> {
  const response = await fetch(url, {
    method: 'POST', redirect: 'manual',
    headers: { cookie: jar.header(url), 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form),
  });
  jar.store(response, url);
  return response;
}

/** The first form of a page: its action (absolute) and its hidden inputs. */
export function parseForm(html: string, baseUrl: string): { action: string; hidden: Record<string, string> } {
  const action = /<form[^>]*action="([^"]*)"/.exec(html)?.[1];
  if (action === undefined) throw new Error(`no form on page: ${html.slice(0, 500)}`);
  const hidden: Record<string, string> = {};
  for (const m of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)) hidden[m[1]!] = decodeEntities(m[2]!);
  return { action: new URL(decodeEntities(action), baseUrl).href, hidden };
}

export function decodeEntities(s: string): string {
  return s.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

/** Follows redirects (with the jar) until a response that is not a redirect to our server. */
export async function follow(response: Response, jar: CookieJar, stopAt: (url: string) => boolean): Promise<{ response: Response; url: string }> {
  let current = response;
  let url = current.url;
  for (let hops = 0; hops < 10 && current.status >= 300 && current.status < 400; hops++) {
    const location = new URL(current.headers.get('location')!, url).href;
    if (stopAt(location)) return { response: current, url: location };
    url = location;
    current = await get(location, jar);
  }
  return { response: current, url };
}

export type LoginOutcome = { redirect: string; jar: CookieJar };

/**
 * Authorization request -> login pages (username-first or single page) -> redirect to the client.
 * Returns the final redirect URL (with code or error). Throws when a page shows instead.
 */
export async function browserlessLogin(authUrl: string, username: string, password: string, redirectPrefix: string, jar = new CookieJar()): Promise<LoginOutcome> {
  const isClient = (u: string): boolean => u.startsWith(redirectPrefix);
  let { response, url } = await follow(await get(authUrl, jar), jar, isClient);
  if (isClient(url)) return { redirect: url, jar };
  let html = await response.text();
  let form = parseForm(html, url);
  if (form.action.endsWith('/username')) {
    const page = await post(form.action, { ...form.hidden, username }, jar);
    html = await page.text();
    if (page.status !== 200) throw new Error(`username page answered ${page.status}: ${html.slice(0, 300)}`);
    form = parseForm(html, url);
  }
  const submitted = await post(form.action, { ...form.hidden, username, password }, jar);
  if (submitted.status !== 303) throw new Error(`login answered ${submitted.status}: ${(await submitted.text()).slice(0, 300)}`);
  ({ response, url } = await follow(submitted, jar, isClient));
  if (!isClient(url)) throw new Error(`login did not return to the client: ${url} answered ${response.status}: ${(await response.text()).slice(0, 400)}`);
  return { redirect: url, jar };
}

/** A login page with its first form, as a flow step sees it. */
export type FlowPage = { url: string; html: string; status: number; form: { action: string; hidden: Record<string, string> } };
/** Where a step of the login pages ends: another page, or the redirect back to the client. */
export type FlowStep = FlowPage | { redirect: URL };

/** Follows `response` (with the jar) to the next page, or stops at the client's redirect URI. */
export async function flowStep(response: Response, from: string, jar: CookieJar, redirectPrefix: string): Promise<FlowStep> {
  const { response: last, url } = await follow(response, jar, (u) => u.startsWith(redirectPrefix));
  if (url.startsWith(redirectPrefix)) return { redirect: new URL(url) };
  const html = await last.text();
  return { url, html, status: last.status, form: /<form/.test(html) ? parseForm(html, from) : { action: '', hidden: {} } };
}

/** GET a URL in this browser: the page it leads to, or the client redirect. */
export async function openStep(url: string, jar: CookieJar, redirectPrefix: string): Promise<FlowStep> {
  return flowStep(await get(url, jar), url, jar, redirectPrefix);
}

/** Submits the page's first form with its hidden fields plus `fields`. */
export async function submitStep(page: FlowPage, fields: Record<string, string>, jar: CookieJar, redirectPrefix: string): Promise<FlowStep> {
  return flowStep(await post(page.form.action, { ...page.form.hidden, ...fields }, jar), page.form.action, jar, redirectPrefix);
}

export function pageOf(step: FlowStep): FlowPage {
  if ('redirect' in step) throw new Error(`expected a page, got the redirect ${step.redirect.href}`);
  return step;
}

export function redirectOf(step: FlowStep): URL {
  if (!('redirect' in step)) throw new Error(`expected the redirect to the client, got a page (${step.status}): ${step.html.slice(0, 400)}`);
  return step.redirect;
}
