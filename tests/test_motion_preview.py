"""The motion-curve preview (web/js/ditto_motion_preview.js), run in Node.js against a stand-in for ComfyUI's app
and a recording canvas, and the server side that makes ComfyUI send the curves again on cached re-runs."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "web" / "js" / "ditto_motion_preview.js"

HARNESS = r"""
import { drawPreview, previewData } from "./preview.mjs";
const ext = globalThis.registered;
// a node type as ComfyUI makes it, with just what the extension uses
function NodeType() {}
NodeType.prototype.addCustomWidget = function (w) { (this.widgets ||= []).push(w); return w; };
NodeType.prototype.computeSize = function () { return [220, 60 + (this.widgets || []).reduce((h, w) => h + w.computeSize(220)[1], 0)]; };
NodeType.prototype.setSize = function (s) { this.size = s; };
NodeType.prototype.setDirtyCanvas = function () { this.dirty = true; };
await ext.beforeRegisterNodeDef(NodeType, { name: "DittoSampleMotion", output: ["DITTO_MOTION"] });
const node = new NodeType();
node.size = [300, 100];
node.properties = {};
node.onNodeCreated();
const widget = node.widgets.find((w) => w.name === "ditto_motion_curves");
// a recording 2-D context
function recorder() {
  const calls = [];
  const ctx = new Proxy({}, {
    get(target, key) {
      if (key === "calls") return calls;
      if (key === "measureText") return (t) => ({ width: t.length * 6 });
      if (key in target) return target[key];
      return (...args) => calls.push([key, ...args]);
    },
    set(target, key, value) { target[key] = value; return true; },
  });
  return ctx;
}
const empty = recorder();
widget.draw(empty, node, 300, 200, 20, false);
const n = 120;
const message = {
  pitch: Array.from({ length: n }, (_, i) => 19 + Math.sin(i / 10)),  // a fixed 19° head angle plus a small nod
  yaw: Array.from({ length: n }, (_, i) => -7 + 0.5 * Math.cos(i / 7)),
  roll: Array.from({ length: n }, () => 2),
  mouth: Array.from({ length: n }, (_, i) => Math.abs(Math.sin(i / 3)) * 0.02),
  fps: [25], frames: [n],
};
let redrawn = 0;
widget.triggerDraw = () => { redrawn += 1; };  // what Nodes 2.0 sets on a canvas widget it shows
node.onExecuted({ ditto_motion: [message] });
const full = recorder();
widget.draw(full, node, 300, 200, 20, false);
const low = recorder();
widget.draw(low, node, 300, 200, 20, true);
const saved = JSON.parse(JSON.stringify(node.properties));  // what a saved workflow keeps
const reopened = new NodeType();
reopened.size = [300, 100];
reopened.properties = saved;
reopened.onNodeCreated();
const again = recorder();
reopened.widgets[0].draw(again, reopened, 300, 200, 20, false);
console.log(JSON.stringify({
  size: node.size, widgetHeight: widget.computeSize(300)[1], serialize: widget.serialize, redrawn,
  data: node.properties.ditto_motion, empty: empty.calls, full: full.calls, low: low.calls, again: again.calls,
  faced: (() => {
    const edited = new NodeType();
    edited.size = [300, 100];
    edited.properties = {};
    edited.onNodeCreated();
    edited.onExecuted({ ditto_motion: [{ ...message, face: { smile: Array.from({ length: n }, (_, i) => i / n), eyebrows: Array(n).fill(-0.5) } }] });
    const ctx = recorder();
    edited.widgets[0].draw(ctx, edited, 300, 200, 20, false);
    return { data: edited.properties.ditto_motion, calls: ctx.calls };
  })(),
  big: previewData({ pitch: Array.from({ length: 1000 }, (_, i) => i), yaw: [], roll: [], mouth: [], fps: [25], frames: [1000] }),
}));
"""


@pytest.fixture(scope="module")
def run():
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed")

    def run_harness(tmp: Path) -> dict:
        source = SCRIPT.read_text()
        app_import = 'import { app } from "../../../scripts/app.js";'
        assert app_import in source
        stand_in = "const app = { registerExtension(e) { globalThis.registered = e; } };"
        (tmp / "preview.mjs").write_text(source.replace(app_import, stand_in))
        (tmp / "harness.mjs").write_text(HARNESS)
        done = subprocess.run([node, str(tmp / "harness.mjs")], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    return run_harness


def _texts(calls):
    return [c for c in calls if c[0] == "fillText"]


def _points(calls):
    return [c for c in calls if c[0] in ("moveTo", "lineTo")]


def test_a_new_node_shows_a_placeholder_of_fixed_height(run, tmp_path):
    result = run(tmp_path)
    assert result["widgetHeight"] > 80 and result["size"][1] >= 60 + result["widgetHeight"]
    assert result["serialize"] is False  # kept in properties, not in widgets_values
    assert any("after a run" in c[1] for c in _texts(result["empty"]))


def test_pose_is_relative_to_the_first_frame(run, tmp_path):
    data = run(tmp_path)["data"]
    assert data["pitch"][0] == 0 and data["yaw"][0] == 0 and data["roll"] == [0] * len(data["roll"])
    assert max(abs(v) for v in data["pitch"]) < 2.1  # the small nod, not the fixed 19°
    assert abs(data["seconds"] - 120 / 25) < 1e-9 and data["frames"] == 120


def test_the_legend_is_clear_of_the_curves(run, tmp_path):
    result = run(tmp_path)
    for calls in (result["full"], result["low"]):
        texts, points = _texts(calls), _points(calls)
        legend_bottom = max(c[3] for c in texts) + 6  # text drawn around its middle, 11-13 px high
        assert points and min(c[2] for c in points) > legend_bottom
        assert {c[1] for c in texts} >= {"pitch", "yaw", "roll", "mouth"}
    assert any("from frame 0" in c[1] for c in _texts(result["full"]))
    # at low zoom: thicker lines, the legend only
    widths = [c for c in result["low"] if c[0] == "stroke"]
    assert widths and not any("from frame 0" in c[1] for c in _texts(result["low"]))


def test_nodes_2_redraws_the_curves_after_a_run(run, tmp_path):
    assert run(tmp_path)["redrawn"] == 1  # Nodes 2.0 redraws a canvas widget only when its triggerDraw is called


def test_a_reopened_workflow_draws_the_saved_curves(run, tmp_path):
    result = run(tmp_path)
    assert _points(result["again"]) == _points(result["full"])


def test_face_amounts_are_drawn_with_their_names(run, tmp_path):
    result = run(tmp_path)
    faced, plain = result["faced"], result["full"]
    assert set(faced["data"]["face"]) == {"smile", "eyebrows"} and result["data"]["face"] == {}
    assert {c[1] for c in _texts(faced["calls"])} >= {"pitch", "mouth", "smile", "eyebrows"}
    strokes = lambda calls: sum(c[0] == "stroke" for c in calls)  # noqa: E731
    assert strokes(faced["calls"]) == strokes(plain) + 2  # one more curve each
    legend_bottom = max(c[3] for c in _texts(faced["calls"])) + 6
    assert min(c[2] for c in _points(faced["calls"])) > legend_bottom


def test_long_motions_are_stored_downsampled(run, tmp_path):
    big = run(tmp_path)["big"]
    assert len(big["pitch"]) <= 240 and big["pitch"][0] == 0 and big["pitch"][-1] > 990


def test_motion_nodes_resend_their_curves_on_cached_runs(tmp_path):
    """ComfyUI re-sends a cached node's UI output only for output nodes and nodes with HAS_INTERMEDIATE_OUTPUT."""
    import comfy_stubs

    comfy_stubs.install(tmp_path)
    pack = comfy_stubs.load_pack()
    for name, cls in comfy_stubs.register(pack).items():
        if "DITTO_MOTION" in cls.RETURN_TYPES:
            assert getattr(cls, "OUTPUT_NODE", False) or getattr(cls, "HAS_INTERMEDIATE_OUTPUT", False), name
