// Drive a .eim with Edge Impulse's Node SDK (LinuxImpulseRunner), as a Node application would.
//   NODE_PATH=.sdk/node/node_modules node node_client.js MODEL.eim always|never THRESHOLD FEATURES.json
// FEATURES.json holds a list of feature lists (packed 0xRRGGBB pixels). Prints one JSON object.
'use strict';
const fs = require('fs');
// The package root fails to load without its `sharp` binary; the runner class loads on its own.
const { LinuxImpulseRunner } = require('edge-impulse-linux/build/library/classifier/linux-impulse-runner');

(async () => {
  const [eim, shmBehavior, threshold, featuresFile] = process.argv.slice(2);
  const images = JSON.parse(fs.readFileSync(featuresFile, 'utf-8'));
  const runner = new LinuxImpulseRunner(eim, { shmBehavior });
  const model = await runner.init();
  const out = { model, shm: runner._inputShm !== undefined, before: [], after: [] };
  for (const f of images) out.before.push(await runner.classify(f));
  const id = model.modelParameters.thresholds[0].id;
  out.set_threshold = await runner.setLearnBlockThreshold({ id, min_anomaly_score: Number(threshold) });
  for (const f of images) out.after.push(await runner.classify(f));
  await runner.stop();
  // exit once written: the SDK leaves each request's 60 s timeout timer running
  process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(0));
})().catch((err) => {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(1);
});
