// Workflows saved before a Ditto node gained a choice (a combo input, such as the encoder and preset of the video
// nodes) load with that choice set. The front end hands a node's widgets the values saved for it in order; when
// the counts match it does not sort out which value was whose, so a value saved for another input can land on the
// new choice. Talking Head Batch saved an empty text for each of its two names inputs where encoder and preset now
// are, and ComfyUI refused the run ("encoder: '' not in [...]"). A Ditto choice that comes back empty, where empty
// is not one of its options, takes its default: what the node did before it offered the choice.
import { app } from "../../../scripts/app.js"; // served at /extensions/ComfyUI-Ditto/js/

// {name: {options, default}} of a node definition's combo inputs (/object_info: ["COMBO", {options, default}] or
// the older [[options…], {default}])
export function comboChoices(nodeData) {
  const inputs = { ...nodeData.input?.required, ...nodeData.input?.optional };
  const choices = {};
  for (const [name, [type, spec = {}]] of Object.entries(inputs)) {
    const options = Array.isArray(type) ? type : type === "COMBO" ? spec.options : null;
    if (options?.length) choices[name] = { options, default: spec.default ?? options[0] };
  }
  return choices;
}

export function repairEmptyChoices(node, choices) {
  for (const widget of node.widgets ?? []) {
    const choice = choices[widget.name];
    if (choice && widget.value === "" && !choice.options.includes("")) widget.value = choice.default;
  }
}

app.registerExtension({
  name: "ditto.savedWorkflows",
  beforeRegisterNodeDef(nodeType, nodeData) {
    if (!nodeData.name?.startsWith("Ditto")) return;
    const choices = comboChoices(nodeData);
    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function (info) {
      const result = onConfigure?.apply(this, arguments);
      repairEmptyChoices(this, choices);
      return result;
    };
  },
});
