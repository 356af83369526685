/**
 * Download progress for people: a bar redrawn in place on a terminal, a log line every 10 %
 * (or every 64 MiB when the size is unknown) otherwise.
 */

import { formatBytes } from '../../encoding/bytes.ts';
import type { Logger } from '../../log.ts';
import type { DownloadProgress } from './download.ts';

export function progressReporter(options: {
  stream?: NodeJS.WriteStream;
  logger?: Logger;
}): (name: string, progress: DownloadProgress) => void {
  const stream = options.stream;
  if (stream?.isTTY) {
    let last = 0;
    return (name, { received, total }) => {
      const now = Date.now();
      const finished = total !== undefined && received >= total;
      if (!finished && now - last < 200) return;
      last = now;
      const width = 30;
      const filled = total ? Math.round((received / total) * width) : 0;
      const bar = total ? `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ` : '';
      const pct = total ? `${Math.floor((received / total) * 100)}% ` : '';
      const size = total ? `${formatBytes(received)}/${formatBytes(total)}` : formatBytes(received);
      stream.write(`\r${name} ${bar}${pct}${size}\u001b[K${finished ? '\n' : ''}`);
    };
  }
  let lastStep = -1;
  return (name, { received, total }) => {
    const step = total ? Math.floor((received / total) * 10) : Math.floor(received / (64 << 20));
    if (step === lastStep) return;
    lastStep = step;
    options.logger?.info(
      { model: name, received, total: total ?? null, percent: total ? step * 10 : null },
      'download progress',
    );
  };
}
