/**
 * Entry point of the benchmarks' fake backend process: serves the fast fake OpenAI server on
 * loopback and prints its URL as the first line of stdout. Not for use on its own.
 *
 *   node bench/lib/fake-backend-server.ts TOKENS MODEL [TOKEN_DELAY_MS SLOTS]
 */
import { startFakeOpenAi } from '../../test/helpers/fake-openai-server.ts';

const [tokens = '64', model = 'bench', delay = '0', slots] = process.argv.slice(2);
const server = await startFakeOpenAi({
  tokens: Number(tokens),
  model,
  tokenDelayMs: Number(delay),
  slots: slots === undefined ? undefined : Number(slots),
});
process.stdout.write(`${server.url}\n`);
// The parent closes our stdin when it stops (or dies): no orphaned backend either way.
process.stdin.resume();
process.stdin.on('end', () => void server.close().then(() => process.exit(0)));
