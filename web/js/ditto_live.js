// Ditto live in ComfyUI's menu (Extensions → Ditto live) and sidebar: opens the live page the pack serves at
// /ditto/live/page/ (talk into the microphone or drop an audio file; the avatar answers in realtime).
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";

const pageURL = () => (typeof api.fileURL === "function" ? api.fileURL("/ditto/live/page/") : "/ditto/live/page/");
const open = () => window.open(pageURL(), "ditto-live");

app.registerExtension({
  name: "ditto.live",
  commands: [{ id: "ditto.live.open", label: "Ditto live (talk to the avatar)", icon: "pi pi-microphone", function: open }],
  menuCommands: [{ path: ["Extensions"], commands: ["ditto.live.open"] }],
  async setup() {
    const manager = app.extensionManager;
    if (!manager || typeof manager.registerSidebarTab !== "function") return;
    manager.registerSidebarTab({
      id: "ditto-live",
      icon: "pi pi-microphone",
      title: "Ditto live",
      tooltip: "Ditto live: talk to the avatar in realtime",
      type: "custom",
      render: (el) => {
        el.innerHTML = "";
        const box = document.createElement("div");
        box.style.cssText = "padding:12px;display:flex;flex-direction:column;gap:8px;line-height:1.4";
        const text = document.createElement("div");
        text.textContent = "Talk into the microphone or drop an audio file: a portrait from the input folder " +
          "speaks it back in realtime, with the Ditto release in models/ditto/.";
        const button = document.createElement("button");
        button.textContent = "Open Ditto live";
        button.className = "p-button p-component";
        button.onclick = open;
        const link = document.createElement("a");
        link.href = pageURL();
        link.target = "ditto-live";
        link.textContent = link.href;
        link.style.cssText = "font-size:12px;opacity:0.7;word-break:break-all";
        box.append(text, button, link);
        el.append(box);
      },
    });
  },
});
