// measure_layout.mjs — load each workflow into a running ComfyUI's own front end (headless Chromium), in the classic
// canvas and in Nodes 2.0 (setting Comfy.VueNodes.Enabled), and measure every node's and group's box as drawn, in
// canvas units (Nodes 2.0: the node's DOM element); report nodes outside every group and overlapping nodes, and
// save a screenshot of each (with --app, also each App form, opened in App mode).
//
//   npm install playwright-core        # once, in the folder you run it from
//   node workflows/measure_layout.mjs OUT_DIR example_workflows/*.json [--server http://127.0.0.1:8188] [--app]
//
// Writes OUT_DIR/boxes.json, OUT_DIR/report.json and the PNGs; prints one line per workflow and renderer. Talks only
// to the given server (start ComfyUI on 127.0.0.1 with --disable-api-nodes); needs Debian's chromium.
import fs from 'fs';
import path from 'path';
import { createRequire } from 'module';
const require = createRequire(path.join(process.cwd(), 'noop.js'));
const { chromium } = require('playwright-core');

const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); if (i < 0) return dflt; const v = args[i + 1]; args.splice(i, 2); return v; };
const flag = (name) => { const i = args.indexOf(name); if (i < 0) return false; args.splice(i, 1); return true; };
const server = opt('--server', 'http://127.0.0.1:8188');
const appShots = flag('--app');
const [outDir, ...files] = args;
fs.mkdirSync(outDir, { recursive: true });

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium', headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
const results = {};
try {
  for (const vue of [false, true]) {
    const page = await browser.newPage({ viewport: { width: 1920, height: 1080 } });
    await page.goto(server + '/', { waitUntil: 'domcontentloaded' });
    await page.waitForFunction(() => { const a = window.app; return a && a.vueAppReady && a.graph && window.LiteGraph; }, null, { timeout: 120000 });
    await page.waitForTimeout(2000);
    await page.evaluate(async (vue) => {
      const s = window.app.extensionManager.setting;
      await s.set('Comfy.VueNodes.Enabled', vue);
      await s.set('Comfy.TutorialCompleted', true).catch(() => {});
    }, vue);
    await page.waitForTimeout(1000);
    for (const file of files) {
      const name = path.basename(file, '.json');
      const workflow = JSON.parse(fs.readFileSync(file, 'utf8'));
      const boxes = await page.evaluate(async ({ workflow, vue }) => {
        const app = window.app;
        await app.loadGraphData(workflow);
        await new Promise(r => setTimeout(r, 2500));
        const ds = app.canvas.ds;
        const toCanvas = (r) => [r.left / ds.scale - ds.offset[0], r.top / ds.scale - ds.offset[1],
                                 r.right / ds.scale - ds.offset[0], r.bottom / ds.scale - ds.offset[1]];
        const canvasRect = app.canvas.canvas.getBoundingClientRect();
        const nodes = app.graph.nodes.map(n => {
          let box;
          const el = vue ? document.querySelector(`[data-node-id="${n.id}"]`) : null;
          if (el) {
            const r = el.getBoundingClientRect();
            box = toCanvas({ left: r.left - canvasRect.left, top: r.top - canvasRect.top, right: r.right - canvasRect.left, bottom: r.bottom - canvasRect.top });
          } else {
            const b = n.boundingRect;  // [x, y, w, h] with the title bar
            box = [b[0], b[1], b[0] + b[2], b[1] + b[3]];
          }
          return { id: n.id, type: n.type, box: box.map(v => Math.round(v)), dom: !!el };
        });
        const groups = app.graph.groups.map(g => {
          const b = g._bounding || g.bounding;
          return { title: g.title, box: [b[0], b[1], b[0] + b[2], b[1] + b[3]].map(v => Math.round(v)) };
        });
        return { nodes, groups };
      }, { workflow, vue });
      const mode = vue ? 'nodes2' : 'classic';
      (results[name] ??= {})[mode] = boxes;
      await page.evaluate(() => window.app.canvas.ds && window.app.canvas.setDirty(true, true));
      await page.screenshot({ path: path.join(outDir, `${name} - ${mode}.png`) });
    }
    await page.close();
  }
  if (appShots) {
    const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    await page.goto(server + '/', { waitUntil: 'domcontentloaded' });
    await page.waitForFunction(() => { const a = window.app; return a && a.vueAppReady && a.graph; }, null, { timeout: 120000 });
    await page.waitForTimeout(2000);
    for (const file of files) {
      const workflow = JSON.parse(fs.readFileSync(file, 'utf8'));
      if (!workflow.extra?.linearData) continue;
      const name = path.basename(file, '.json');
      await page.evaluate(async (workflow) => {
        await window.app.loadGraphData({ ...workflow, extra: { ...workflow.extra, linearMode: true } });
      }, workflow);
      await page.waitForTimeout(3000);
      await page.screenshot({ path: path.join(outDir, `${name} - app.png`) });
    }
  }
} finally {
  await browser.close();
}
// overlaps and nodes outside groups
const report = {};
const inside = (a, g) => a[0] >= g[0] && a[1] >= g[1] && a[2] <= g[2] && a[3] <= g[3];
const apart = (a, b) => a[2] <= b[0] || b[2] <= a[0] || a[3] <= b[1] || b[3] <= a[1];
for (const [name, modes] of Object.entries(results)) {
  for (const [mode, { nodes, groups }] of Object.entries(modes)) {
    const problems = [];
    for (const n of nodes) if (!groups.some(g => inside(n.box, g.box))) problems.push(`${n.type}#${n.id} ${JSON.stringify(n.box)} outside every group`);
    for (let i = 0; i < nodes.length; i++) for (let j = i + 1; j < nodes.length; j++)
      if (!apart(nodes[i].box, nodes[j].box)) problems.push(`${nodes[i].type}#${nodes[i].id} overlaps ${nodes[j].type}#${nodes[j].id}`);
    (report[name] ??= {})[mode] = problems;
  }
}
fs.writeFileSync(path.join(outDir, 'boxes.json'), JSON.stringify(results, null, 1));
fs.writeFileSync(path.join(outDir, 'report.json'), JSON.stringify(report, null, 1));
for (const [name, modes] of Object.entries(report))
  for (const [mode, problems] of Object.entries(modes)) console.log(`${mode.padEnd(8)} ${problems.length ? problems.length + ' problems' : 'ok'}  ${name}`);
