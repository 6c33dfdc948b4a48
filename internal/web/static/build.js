// The build page follows its build live through the server's event
// stream: step events update a step's status, log events append text to
// its log, build events update the header, and end closes the stream.
(function () {
  "use strict";
  // How much text one step's log keeps on the page; older lines are
  // dropped from the view (the raw log keeps everything).
  const keepChars = 512 * 1024;

  // collapse shows a line as a terminal would after carriage returns:
  // the last non-empty part between them.
  function collapse(line) {
    if (line.indexOf("\r") < 0) {
      return line;
    }
    const parts = line.split("\r");
    for (let i = parts.length - 1; i >= 0; i--) {
      if (parts[i] !== "") {
        return parts[i];
      }
    }
    return "";
  }

  // LogView appends text to a step's <pre>. Complete lines become text
  // nodes; the line still being written lives in its own node, so that
  // progress output rewritten with \r updates in place.
  function LogView(details) {
    this.details = details;
    this.pre = details.querySelector("pre.log");
    this.partial = "";
    this.partialNode = document.createTextNode("");
    this.pre.appendChild(this.partialNode);
    this.chars = 0;
    this.next = null;
  }

  LogView.prototype.append = function (ev) {
    if (this.next !== null && ev.offset < this.next) {
      return; // already shown (a reconnect may resend)
    }
    this.next = ev.next;
    const pre = this.pre;
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 24;
    const text = this.partial + ev.text;
    const nl = text.lastIndexOf("\n");
    if (nl >= 0) {
      const lines = text.slice(0, nl).split("\n").map(collapse);
      const shown = lines.join("\n") + "\n";
      pre.insertBefore(document.createTextNode(shown), this.partialNode);
      this.chars += shown.length;
      this.partial = text.slice(nl + 1);
      this.trim();
    } else {
      this.partial = text;
    }
    this.partialNode.nodeValue = collapse(this.partial);
    if (atBottom) {
      pre.scrollTop = pre.scrollHeight;
    }
  };

  LogView.prototype.trim = function () {
    while (this.chars > keepChars && this.pre.firstChild !== this.partialNode) {
      const first = this.pre.firstChild;
      this.chars -= first.nodeValue.length;
      this.pre.removeChild(first);
      this.details.querySelector(".truncated").hidden = false;
    }
  };

  function statusBadge(state, result) {
    const span = document.createElement("span");
    const finished = state === "finished" && result;
    span.className = "badge " + (finished ? "r-" + result : "s-" + state);
    span.textContent = finished ? result : state;
    return span;
  }

  function humanBytes(n) {
    const units = [["GiB", 1 << 30], ["MiB", 1 << 20], ["KiB", 1 << 10]];
    for (const [name, size] of units) {
      if (n >= size) {
        return (n / size).toFixed(1) + " " + name;
      }
    }
    return n + " B";
  }

  function formatTime(s) {
    if (!s) {
      return "—";
    }
    return s.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC");
  }

  document.addEventListener("DOMContentLoaded", function () {
    const root = document.getElementById("build");
    const stepsEl = document.getElementById("steps");
    const views = {};

    function stepElement(number) {
      let el = stepsEl.querySelector('details.step[data-step="' + number + '"]');
      if (el) {
        return el;
      }
      const tmpl = document.getElementById("step-template");
      el = tmpl.content.firstElementChild.cloneNode(true);
      el.dataset.step = String(number);
      el.dataset.from = "0";
      el.querySelector(".step-number").textContent = String(number);
      el.querySelectorAll("a").forEach(function (a) {
        a.href = a.getAttribute("href").replace("/steps/0/log", "/steps/" + number + "/log");
      });
      stepsEl.appendChild(el);
      return el;
    }

    function view(number) {
      if (!views[number]) {
        views[number] = new LogView(stepElement(number));
      }
      return views[number];
    }

    function onStep(step) {
      const el = stepElement(step.number);
      view(step.number);
      el.querySelector(".step-name").textContent = step.name;
      el.querySelector(".step-size").textContent = humanBytes(step.log_size);
      el.querySelector(".step-reason").textContent = step.reason || "";
      const holder = el.querySelector(".step-status");
      holder.replaceChildren(statusBadge(step.state, step.result));
      if (step.state === "running") {
        el.open = true;
      }
    }

    function onBuild(build) {
      document.getElementById("build-status").replaceChildren(statusBadge(build.state, build.result));
      document.getElementById("build-reason").textContent = build.reason || "";
      document.getElementById("build-finished").textContent = formatTime(build.finished_at);
      if (build.state === "finished") {
        const cancel = document.getElementById("cancel-form");
        if (cancel) {
          cancel.remove();
        }
      }
    }

    stepsEl.querySelectorAll("details.step").forEach(function (el) {
      view(Number(el.dataset.step));
    });

    const es = new EventSource(root.dataset.events);
    es.addEventListener("step", function (e) { onStep(JSON.parse(e.data)); });
    es.addEventListener("log", function (e) {
      const ev = JSON.parse(e.data);
      view(ev.step).append(ev);
    });
    es.addEventListener("build", function (e) { onBuild(JSON.parse(e.data)); });
    es.addEventListener("end", function () {
      es.close();
      root.dataset.finished = "true";
    });
  });
})();
