export const DASH = '—';

export function present<T>(v: T | null | undefined): v is T {
  return v !== null && v !== undefined && v !== '';
}

export function text(v: unknown): string {
  return present(v) ? String(v) : DASH;
}

export function shortId(id: string | undefined): string {
  if (!id) return DASH;
  return id.length > 14 ? `${id.slice(0, 6)}…${id.slice(-4)}` : id;
}

export function ms(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return DASH;
  const v = seconds * 1000;
  return v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v < 10 ? v.toFixed(1) : Math.round(v)} ms`;
}

export function rate(v: number | undefined, digits = 1): string {
  if (v === undefined || !Number.isFinite(v)) return DASH;
  return v >= 100 ? String(Math.round(v)) : v.toFixed(digits);
}

export function ago(iso: string | undefined | null): string {
  if (!iso) return DASH;
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return DASH;
  const s = Math.round((Date.now() - t) / 1000);
  if (s < 0) return 'just now';
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.round(s / 60)}m ago`;
  return `${Math.round(s / 3600)}h ago`;
}

/** A peer's display name: its announced name, else its short id. */
export function peerName(p: { name?: string; id?: string }): string {
  return p.name && p.name.trim() !== '' ? p.name : shortId(p.id);
}

export function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

export function bytes(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n) || n <= 0) return DASH;
  const gib = n / 2 ** 30;
  return gib >= 1 ? `${gib >= 10 ? Math.round(gib) : gib.toFixed(1)} GiB` : `${Math.round(n / 2 ** 20)} MiB`;
}

/** One line about a machine: its GPU and VRAM, else its CPU cores and memory. */
export function machine(
  hw:
    | { gpuKind?: string; gpuNames?: string[]; vramBytes?: number; memoryBytes?: number; cpuCores?: number }
    | null
    | undefined,
): string | undefined {
  if (!hw) return undefined;
  const gpu = hw.gpuKind && hw.gpuKind !== 'cpu' && hw.gpuKind !== 'none';
  if (gpu) return `${hw.gpuNames?.[0] ?? hw.gpuKind} · ${bytes(hw.vramBytes)} VRAM`;
  const cores = hw.cpuCores ? `${hw.cpuCores} cores` : 'CPU';
  return hw.memoryBytes ? `${cores} · ${bytes(hw.memoryBytes)}` : cores;
}
