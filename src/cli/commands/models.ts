import { resolve } from 'node:path';
import { progressReporter } from '../../backends/models/progress.ts';
import { isRemoteSource } from '../../backends/models/source.ts';
import { listCachedModels, removeCachedModel, resolveModelFile } from '../../backends/models/store.ts';
import { formatBytes } from '../../encoding/bytes.ts';
import { ConfigError } from '../../errors.ts';
import { createLogger } from '../../log.ts';
import { defaultDataDir } from '../../node/config.ts';
import { parseFlags } from '../args.ts';

const HELP = `mesh-llm models <list | pull SOURCE | rm ID> [flags]

  list                 the downloaded models: id, size, sha256, source
  pull SOURCE          download https://…/file.gguf, hf:OWNER/REPO/FILE.gguf or
                       hf:OWNER/REPO:QUANT (optionally #sha256=HEX) into the cache
  rm ID                delete a cached model (its id from 'list', or the source it was pulled as)
  --data-dir DIR       default ~/.mesh-llm or $MESH_LLM_HOME; models live in DIR/models/
  --model-mirror URL   fetch hf: models from this mirror (or $MESH_LLM_MODEL_MIRROR)
  --json               list as JSON`;

const FLAGS = {
  'data-dir': { type: 'string' },
  'model-mirror': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export async function runModels(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags(args, FLAGS);
  const [action, target, ...rest] = positionals;
  if (values.help || !action) {
    process.stdout.write(`${HELP}\n`);
    return values.help ? 0 : 2;
  }
  if (rest.length > 0) throw new ConfigError(`unexpected argument '${rest[0]}'`);
  const dataDir = values['data-dir'] ? resolve(values['data-dir']) : defaultDataDir();
  switch (action) {
    case 'list': {
      const models = await listCachedModels(dataDir);
      if (values.json) process.stdout.write(`${JSON.stringify(models, null, 2)}\n`);
      else if (models.length === 0) process.stdout.write('no downloaded models\n');
      else {
        for (const m of models) {
          process.stdout.write(
            `${m.id}  ${formatBytes(m.bytes)}  sha256=${m.sha256?.slice(0, 16) ?? '—'}  ${m.source ?? ''}\n`,
          );
        }
      }
      return 0;
    }
    case 'pull': {
      if (!target) throw new ConfigError('pull needs a SOURCE');
      if (!isRemoteSource(target)) throw new ConfigError(`'${target}' is a local path: nothing to pull`);
      const logger = createLogger({ format: 'pretty' });
      const path = await resolveModelFile(target, {
        dataDir,
        mirror: values['model-mirror'] ?? (process.env.MESH_LLM_MODEL_MIRROR || undefined),
        logger,
        onProgress: progressReporter({ stream: process.stderr, logger }),
      });
      process.stdout.write(`${path}\n`);
      return 0;
    }
    case 'rm': {
      if (!target) throw new ConfigError('rm needs the ID of a cached model');
      const removed = await removeCachedModel(dataDir, target);
      process.stdout.write(`removed ${removed.id}\n`);
      return 0;
    }
    default:
      throw new ConfigError(`unknown action '${action}': use list, pull or rm`);
  }
}
