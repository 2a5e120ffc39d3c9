// Draws a Ditto motion's head-pose and mouth curves on the node after it runs, from the "ditto_motion" entry of
// the node's UI output (sent by every node that outputs DITTO_MOTION, and by Save Motion).
import { app } from "../../../scripts/app.js"; // served at /extensions/ComfyUI-Ditto/js/

const COLORS = { pitch: "#e0a030", yaw: "#40a0e0", roll: "#a070e0", mouth: "#e05060" };
const HEIGHT = 120;

function drawCurves(canvas, data) {
  const ctx = canvas.getContext("2d");
  const width = canvas.width, height = canvas.height;
  ctx.fillStyle = "#1b1b1b";
  ctx.fillRect(0, 0, width, height);
  const poseHeight = height * 0.62, mouthTop = poseHeight + 6;
  const pose = ["pitch", "yaw", "roll"].flatMap((k) => data[k] || []);
  const limit = Math.max(5, ...pose.map(Math.abs));
  const mouthMax = Math.max(1e-6, ...(data.mouth || [0]));
  const plot = (values, color, y0, y1, lo, hi) => {
    if (!values || values.length < 2) return;
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    values.forEach((v, i) => {
      const x = (i / (values.length - 1)) * (width - 8) + 4;
      const y = y1 - ((v - lo) / (hi - lo)) * (y1 - y0);
      i ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
    });
    ctx.stroke();
  };
  ctx.strokeStyle = "#444";
  ctx.beginPath();
  ctx.moveTo(0, poseHeight / 2);
  ctx.lineTo(width, poseHeight / 2);
  ctx.stroke();
  for (const k of ["pitch", "yaw", "roll"]) plot(data[k], COLORS[k], 4, poseHeight - 4, -limit, limit);
  plot(data.mouth, COLORS.mouth, mouthTop, height - 4, 0, mouthMax);
  ctx.font = "10px sans-serif";
  let x = 6;
  for (const [k, c] of Object.entries(COLORS)) {
    ctx.fillStyle = c;
    ctx.fillText(k, x, 12);
    x += 42;
  }
  ctx.fillStyle = "#aaa";
  const seconds = (data.frames?.[0] ?? 0) / 25;
  ctx.fillText(`±${limit.toFixed(1)}°  ${data.frames?.[0] ?? 0} frames (${seconds.toFixed(1)} s)`, x + 4, 12);
}

app.registerExtension({
  name: "ditto.motionPreview",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const outputsMotion = (nodeData.output || []).includes("DITTO_MOTION");
    if (!outputsMotion && nodeData.name !== "DittoSaveMotion") return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const data = message?.ditto_motion?.[0];
      if (!data) return;
      if (!this.dittoCanvas) {
        this.dittoCanvas = document.createElement("canvas");
        this.dittoCanvas.height = HEIGHT;
        this.addDOMWidget("motion_curves", "ditto_motion_curves", this.dittoCanvas, {
          serialize: false,
          getMinHeight: () => HEIGHT + 10,
        });
        const [width, height] = this.computeSize();
        this.setSize([Math.max(this.size[0], width), Math.max(this.size[1], height)]);
      }
      this.dittoCanvas.width = Math.max(200, Math.floor(this.size[0] - 20));
      drawCurves(this.dittoCanvas, data);
      this.setDirtyCanvas(true, true);
    };
  },
});
