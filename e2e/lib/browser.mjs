// The user's browser plus the SSO reverse proxy, as plain HTTP: every request to the
// authorization server carries X-Forwarded-User, as oauth2-proxy would add it after login.
//
// signIn(authorizeUrl) GETs the authorize URL without following redirects. mcp-authd answers
// either 302 to the client's redirect URI (consent already given, or a pre-provisioned client)
// or 200 with the consent page; then the form is posted back (decision=approve or deny), which
// answers 303 to the client's redirect URI. The URL the client receives is returned.

export const USER = process.env.E2E_USER || 'alice@example.com';

function decodeHtml(text) {
  return text
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

/** Parses the consent form: its action and its hidden ticket. */
export function consentForm(html, baseUrl) {
  const action = /<form[^>]*action="([^"]*)"/.exec(html);
  const ticket = /name="ticket" value="([^"]*)"/.exec(html);
  if (!action || !ticket) throw new Error(`no consent form in the page: ${html.slice(0, 300)}`);
  return { action: new URL(decodeHtml(action[1]), baseUrl).href, ticket: decodeHtml(ticket[1]) };
}

/** Runs the browser side of an authorization request; returns the client's redirect URL. */
export async function signIn(authorizeUrl, { user = USER, decision = 'approve', log = () => {} } = {}) {
  const headers = { 'X-Forwarded-User': user, 'X-Forwarded-Groups': 'eng' };
  const url = String(authorizeUrl);
  log(`browser: GET ${url}`);
  let response = await fetch(url, { redirect: 'manual', headers });
  if (response.status === 200) {
    const page = await response.text();
    if (!page.includes('Approve')) throw new Error(`authorize answered 200 without a consent page`);
    const form = consentForm(page, url);
    log(`browser: consent page shown, posting decision=${decision}`);
    response = await fetch(form.action, {
      method: 'POST',
      redirect: 'manual',
      headers: { ...headers, 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ ticket: form.ticket, decision }).toString(),
    });
  }
  if (response.status !== 302 && response.status !== 303) {
    throw new Error(`authorize: expected a redirect, got ${response.status}: ${(await response.text()).slice(0, 300)}`);
  }
  const location = response.headers.get('location');
  log(`browser: redirected to ${location.replace(/code=[^&]+/, 'code=…')}`);
  return location;
}

/** The query parameters of a redirect URL. */
export function callbackParams(location) {
  return Object.fromEntries(new URL(location).searchParams);
}
