// `BROWSER` for command-line clients (mcp-remote, MCP Inspector): plays the browser and the
// SSO proxy for the URL the client opens, then delivers the redirect to the client's loopback
// callback listener, as a browser would.
//
// usage: node fake_browser.mjs <authorize URL>

import { signIn } from './lib/browser.mjs';

const url = process.argv[2];
const log = (line) => console.error(`[fake-browser] ${line}`);
try {
  const location = await signIn(url, { log });
  const response = await fetch(location, { redirect: 'manual' });
  log(`callback answered ${response.status}`);
  process.exit(response.ok ? 0 : 1);
} catch (error) {
  log(`failed: ${error.stack || error}`);
  process.exit(1);
}
