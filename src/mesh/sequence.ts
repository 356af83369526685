import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../files/atomic-write.ts';

const SEQ_FILE = 'announcement-seq';

/**
 * Announcement sequence numbers that keep rising across restarts: each value is at
 * least wall-clock ms × 1000 and above the last one persisted in the data dir, so peers
 * accept a restarted node even if its clock stepped back a little.
 */
export class AnnouncementSequence {
  private readonly file: string | undefined;
  private readonly clock: () => number;
  private current = 0n;

  constructor(options: { dataDir?: string; clock: () => number }) {
    this.file = options.dataDir === undefined ? undefined : join(options.dataDir, SEQ_FILE);
    this.clock = options.clock;
  }

  async load(): Promise<void> {
    if (this.file === undefined) return;
    try {
      const text = (await readFile(this.file, 'utf8')).trim();
      if (/^\d{1,20}$/.test(text)) {
        const persisted = BigInt(text);
        if (persisted > this.current) this.current = persisted;
      }
    } catch {
      // First run or unreadable: the wall clock alone still gives a rising value.
    }
  }

  next(): bigint {
    const floor = BigInt(Math.floor(this.clock())) * 1000n;
    this.current = this.current + 1n > floor ? this.current + 1n : floor;
    return this.current;
  }

  get value(): bigint {
    return this.current;
  }

  async persist(): Promise<void> {
    if (this.file === undefined) return;
    await writeFileAtomic(this.file, `${this.current}\n`);
  }
}
