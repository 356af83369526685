/** The GPU flags' values; kept apart from runtime.ts so parsing them loads no native code. */

/** `--gpu`: auto = node-llama-cpp's own detection; off = CPU only. */
export type GpuChoice = 'auto' | 'cuda' | 'vulkan' | 'metal' | 'off';
export const GPU_CHOICES = ['auto', 'cuda', 'vulkan', 'metal', 'off'] as const satisfies readonly GpuChoice[];

/** `--gpu-layers`: a count, `auto` (what fits in free VRAM) or `max` (all, or refuse). */
export type GpuLayersChoice = number | 'auto' | 'max';
