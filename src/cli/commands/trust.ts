import { ConfigError } from '../../errors.ts';
import { DEFAULT_CONSOLE_PORT } from '../../node/config.ts';
import { parseFlags, portFlag } from '../args.ts';
import { consoleCredentialFor } from './status.ts';

const FLAGS = {
  console: { type: 'string' },
  'data-dir': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** `mesh-llm trust reset PEER`: the running node forgets the pin and re-trusts on next sight. */
export async function runTrust(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags(args, FLAGS);
  const [action, peer] = positionals;
  if (values.help || action !== 'reset' || !peer) {
    process.stdout.write('mesh-llm trust reset PEER_ID [--console PORT] [--data-dir DIR]\n');
    return values.help ? 0 : 2;
  }
  if (!/^[0-9a-f]{64}$/.test(peer)) throw new ConfigError('PEER_ID must be the 64-character hex endpoint id');
  const port = portFlag(values.console, '--console', DEFAULT_CONSOLE_PORT);
  const credential = await consoleCredentialFor(values['data-dir']);
  let response: Response;
  try {
    response = await fetch(`http://127.0.0.1:${port}/api/trust/reset`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${credential}` },
      body: JSON.stringify({ peer }),
      signal: AbortSignal.timeout(5000),
    });
  } catch {
    throw new ConfigError(`no node is answering on console port ${port}`);
  }
  const body = (await response.json()) as { reset?: boolean; error?: { message: string } };
  if (!response.ok) throw new ConfigError(body.error?.message ?? `console answered ${response.status}`);
  process.stdout.write(
    body.reset
      ? `pin for ${peer.slice(0, 12)} removed; it is re-pinned on its next statement\n`
      : `no pin was stored for ${peer.slice(0, 12)}\n`,
  );
  return 0;
}
