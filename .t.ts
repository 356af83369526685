const { measureCode } = await import('./src/hardening/measure.ts');
for (let i=0;i<3;i++){ const t2 = performance.now(); const m = await measureCode(); console.log(performance.now() - t2, m.binaryHash); }
