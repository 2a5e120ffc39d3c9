// Draws a Ditto motion's head-pose and mouth curves on the node, from the "ditto_motion" entry of the node's UI
// output (sent by every node that outputs DITTO_MOTION, and by Save Motion).
//
// - The curves are kept in the node's properties (properties.ditto_motion), so they are saved with the workflow
//   and drawn again when it is reopened; a re-run that comes from ComfyUI's cache re-sends the cached UI output
//   (the motion nodes declare HAS_INTERMEDIATE_OUTPUT), which lands here like a fresh one.
// - Drawn on the graph canvas (not a DOM element), so it stays visible when ComfyUI simplifies nodes at low zoom;
//   Nodes 2.0 (the DOM renderer) gives the widget a canvas of its own and redraws it through triggerDraw.
// - Head pose is shown relative to the first frame (a portrait's fixed head angle would otherwise flatten small
//   movements); the legend has its own strip above the plot.
// - A motion with face edits (Edit Face) also sends "face": the amount of each face control over time (smile,
//   eyebrows, …; 1 is a clear expression). They share the lower plot with the mouth, on their own scale around a
//   zero line, and each gets a legend entry.
import { app } from "../../../scripts/app.js"; // served at /extensions/ComfyUI-Ditto/js/

const CURVES = [
  ["pitch", "#f0b040"],
  ["yaw", "#50b0f0"],
  ["roll", "#c080f0"],
  ["mouth", "#f06070"],
];
const FACE_COLORS = ["#60d090", "#e0e070", "#f09050", "#70a0ff", "#ff80c0", "#a0e0ff", "#d0a0ff", "#c0c0c0",
  "#90f0c0", "#ffb0a0"];
const HEIGHT = 112; // the widget's height on the node, canvas units
const LEGEND = 16; // the legend's strip at the top
const MAX_POINTS = 240; // curves are stored downsampled to this many points (the plot is ~300 units wide)

export function downsample(values, count = MAX_POINTS) {
  if (!Array.isArray(values) || values.length <= count) return values || [];
  const step = values.length / count;
  return Array.from({ length: count }, (_, i) => values[Math.min(values.length - 1, Math.round(i * step))]);
}

// What is kept in node.properties: pose relative to the first frame, mouth as sent, and the clip's length.
export function previewData(message) {
  const points = message.pitch?.length ?? 0;
  const pointRate = message.fps?.[0] || 25; // preview points per second (the motion's fps ÷ the downsampling step)
  const relative = (values) => (values?.length ? values.map((v) => v - values[0]) : []);
  return {
    pitch: downsample(relative(message.pitch)),
    yaw: downsample(relative(message.yaw)),
    roll: downsample(relative(message.roll)),
    mouth: downsample(message.mouth || []),
    face: Object.fromEntries(Object.entries(message.face || {}).map(([name, values]) => [name, downsample(values)])),
    frames: message.frames?.[0] ?? points,
    seconds: points / pointRate,
  };
}

function plot(ctx, values, color, x, y0, width, height, lo, hi, lineWidth) {
  if (!values || values.length < 2) return;
  ctx.strokeStyle = color;
  ctx.lineWidth = lineWidth;
  ctx.beginPath();
  values.forEach((v, i) => {
    const px = x + (i / (values.length - 1)) * width;
    const py = y0 + height - ((v - lo) / (hi - lo)) * height;
    i ? ctx.lineTo(px, py) : ctx.moveTo(px, py);
  });
  ctx.stroke();
}

export function drawPreview(ctx, data, x, y, width, height, lowQuality = false) {
  ctx.save();
  ctx.fillStyle = "#181818";
  ctx.strokeStyle = "#3a3a3a";
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.roundRect ? ctx.roundRect(x, y, width, height, 4) : ctx.rect(x, y, width, height);
  ctx.fill();
  ctx.stroke();
  if (!data || !data.pitch?.length) {
    if (!lowQuality) {
      ctx.fillStyle = "#777";
      ctx.font = "12px sans-serif";
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText("motion curves appear after a run", x + width / 2, y + height / 2);
    }
    ctx.restore();
    return;
  }
  const pad = 6;
  const left = x + pad, inner = width - 2 * pad;
  const face = faceCurves(data);
  const top = y + LEGEND * (face.length ? 2 : 1) + 2, bottom = y + height - pad; // face names: a second legend row
  const poseHeight = (bottom - top) * 0.64, mouthTop = top + poseHeight + 6, mouthHeight = bottom - mouthTop;
  const pose = ["pitch", "yaw", "roll"].flatMap((k) => data[k] || []);
  const limit = Math.max(1, ...pose.map(Math.abs));
  const mouthMax = Math.max(1e-6, ...(data.mouth || [0]));
  const lineWidth = lowQuality ? 3 : 1.6;
  // zero line of the pose plot and the separator above the mouth plot
  ctx.strokeStyle = "#444";
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(left, top + poseHeight / 2);
  ctx.lineTo(left + inner, top + poseHeight / 2);
  ctx.moveTo(left, mouthTop - 3);
  ctx.lineTo(left + inner, mouthTop - 3);
  ctx.stroke();
  ctx.save();
  ctx.beginPath();
  ctx.rect(x, top - 1, width, bottom - top + 2); // nothing is drawn over the legend
  ctx.clip();
  for (const [name, color] of CURVES.slice(0, 3)) plot(ctx, data[name], color, left, top, inner, poseHeight, -limit, limit, lineWidth);
  plot(ctx, data.mouth, CURVES[3][1], left, mouthTop, inner, mouthHeight, 0, mouthMax, lineWidth);
  const faceLimit = Math.max(1, ...face.flatMap(([, values]) => values.map(Math.abs)));
  for (const [name, values, color] of face) plot(ctx, values, color, left, mouthTop, inner, mouthHeight, -faceLimit, faceLimit, lineWidth);
  ctx.restore();
  // legend strip: pose and mouth, then the face controls on a row of their own ("+n" for those that do not fit)
  ctx.font = lowQuality ? "bold 13px sans-serif" : "bold 11px sans-serif";
  ctx.textBaseline = "middle";
  ctx.textAlign = "left";
  legendRow(ctx, CURVES, left, y + LEGEND / 2 + 2, x + width - pad);
  legendRow(ctx, face.map(([name, , color]) => [name, color]), left, y + LEGEND * 1.5 + 2, x + width - pad);
  if (!lowQuality) {
    ctx.fillStyle = "#aaa";
    ctx.font = "11px sans-serif";
    ctx.textAlign = "right";
    const seconds = data.seconds ? ` · ${data.seconds.toFixed(1)} s` : "";
    ctx.fillText(`±${limit.toFixed(1)}° from frame 0${seconds}`, x + width - pad, y + LEGEND / 2 + 2);
  }
  ctx.restore();
}

function legendRow(ctx, entries, left, middle, end) {
  let lx = left;
  for (const [i, [name, color]] of entries.entries()) {
    const rest = entries.length - i;
    const room = rest > 1 ? ctx.measureText(`+${rest - 1}`).width + 8 : 0;
    if (lx + ctx.measureText(name).width + room > end) {
      ctx.fillStyle = "#aaa";
      ctx.fillText(`+${rest}`, lx, middle);
      return;
    }
    ctx.fillStyle = color;
    ctx.fillText(name, lx, middle);
    lx += ctx.measureText(name).width + 8;
  }
}

// [name, values, color] of each face control the motion moves, in the order sent
function faceCurves(data) {
  return Object.entries(data.face || {}).map(([name, values], i) => [name, values, FACE_COLORS[i % FACE_COLORS.length]]);
}

function addPreviewWidget(node) {
  if (node.widgets?.some((w) => w.name === "ditto_motion_curves")) return;
  node.addCustomWidget({
    name: "ditto_motion_curves",
    type: "ditto_motion_curves",
    value: null,
    serialize: false, // the curves live in node.properties, not in widgets_values
    options: { serialize: false },
    computeSize: (width) => [width, HEIGHT],
    draw(ctx, owner, width, y, _h, lowQuality) {
      drawPreview(ctx, owner.properties?.ditto_motion, 10, y + 2, width - 20, HEIGHT - 6, !!lowQuality);
    },
  });
}

app.registerExtension({
  name: "ditto.motionPreview",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const outputsMotion = (nodeData.output || []).includes("DITTO_MOTION");
    if (!outputsMotion && nodeData.name !== "DittoSaveMotion") return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      addPreviewWidget(this);
      const [width, height] = this.computeSize();
      this.setSize([Math.max(this.size[0], width), Math.max(this.size[1], height)]);
      return result;
    };
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const data = message?.ditto_motion?.[0];
      if (!data) return;
      this.properties = this.properties || {};
      this.properties.ditto_motion = previewData(data);
      this.setDirtyCanvas(true, true); // the classic canvas
      // Nodes 2.0 draws a canvas widget into its own element, only when asked to (its triggerDraw)
      this.widgets?.find((w) => w.name === "ditto_motion_curves")?.triggerDraw?.();
    };
  },
});
