// One implementation: the tiny model's generator (fuzz failures reproduce from their seed).
export { mulberry32 } from '../../src/backends/gguf/tiny-model.ts';
