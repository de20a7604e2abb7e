//! The dashboard's stylesheet and script, served from this origin (the
//! page's Content-Security-Policy allows nothing inline). The script is
//! the whole client: it refreshes the live part of the page when the
//! event stream says something moved, and every 5 s for GPU figures.

pub const CSS: &str = r#"
:root { font-family: system-ui, sans-serif; color: #1d2330; background: #f6f7f9; }
body { margin: 0; }
header { display: flex; gap: 1.5em; align-items: baseline; padding: .6em 1.2em; background: #1d2330; color: #fff; }
header a { color: #fff; }
.brand { font-weight: 700; font-size: 1.2em; text-decoration: none; }
#status { color: #9fb3c8; font-size: .85em; }
.who { margin-left: auto; font-size: .9em; }
main { padding: 0 1.2em 2em; }
h2 { font-size: 1.1em; margin: 1.2em 0 .5em; }
h2 small, h3 small { color: #6b778c; font-weight: 400; }
.hosts { display: flex; flex-wrap: wrap; gap: 1em; }
.host { background: #fff; border: 1px solid #dde1e7; border-radius: 6px; padding: .5em .7em; }
.host.down { opacity: .6; }
.host h3 { margin: 0 0 .4em; font-size: 1em; }
.gpus { display: grid; grid-template-columns: repeat(4, 11em); gap: .4em; }
.gpu { border-radius: 4px; padding: .35em .5em; font-size: .8em; border: 2px solid transparent; min-height: 4.6em; }
.gpu .idx b { float: right; }
.gpu .mem { color: #3d4654; }
.gpu.free { background: #eef1f4; }
.gpu.foreign { border-color: #c62828; }
.gpu.u0 { background: #e3f2e9; } .gpu.u1 { background: #d4efdc; } .gpu.u2 { background: #e6f0c8; }
.gpu.u3 { background: #f1efbd; } .gpu.u4 { background: #f7e6ad; } .gpu.u5 { background: #f9d89c; }
.gpu.u6 { background: #f8c48b; } .gpu.u7 { background: #f4a77a; } .gpu.u8 { background: #ee8a6c; }
.gpu.u9 { background: #e4685e; color: #fff; }
.gpu.free.u0 { background: #eef1f4; }
.user { color: #3b5bdb; }
.foreign { color: #c62828; }
.free { color: #8792a2; }
table { border-collapse: collapse; background: #fff; width: 100%; font-size: .9em; }
th, td { text-align: left; padding: .3em .6em; border-bottom: 1px solid #eceff3; vertical-align: top; }
tr.failed td { color: #c62828; }
table.facts { width: auto; }
.note { color: #6b778c; }
.error { color: #c62828; }
pre.logs { background: #11151c; color: #e6e9ef; padding: .8em; overflow-x: auto; font-size: .8em; max-height: 40em; }
.chart { width: 100%; max-width: 760px; background: #fff; }
.chart .axis { stroke: #8792a2; }
.chart .tick { font-size: 10px; fill: #6b778c; }
.legend { font-size: .85em; margin-top: .3em; }
.key { margin-right: 1em; }
.swatch { display: inline-block; width: .8em; height: .8em; margin-right: .3em; vertical-align: middle; }
.swatch.c0 { background: #4e79a7; } .swatch.c1 { background: #f28e2b; } .swatch.c2 { background: #59a14f; }
.swatch.c3 { background: #e15759; } .swatch.c4 { background: #76b7b2; } .swatch.c5 { background: #edc948; }
.swatch.c6 { background: #b07aa1; } .swatch.c7 { background: #9c755f; }
.login { max-width: 28em; margin: 4em auto; background: #fff; padding: 1em 2em 2em; border-radius: 6px; }
.login input[type=password] { width: 100%; margin: .4em 0 1em; padding: .4em; }
"#;

pub const JS: &str = r#"(function () {
  var live = document.getElementById("live");
  var status = document.getElementById("status");
  if (!live) { return; }
  var pending = null;
  function refresh() {
    pending = null;
    var url = location.pathname + "?fragment=1";
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject("HTTP " + r.status); })
      .then(function (html) {
        live.innerHTML = html;
        status.textContent = "live, updated " + new Date().toLocaleTimeString();
      })
      .catch(function (e) { status.textContent = "not updating (" + e + ")"; });
  }
  function soon() { if (!pending) { pending = setTimeout(refresh, 300); } }
  if (window.EventSource) {
    var events = new EventSource("/events");
    events.onmessage = soon;
  }
  setInterval(soon, 5000);
})();
"#;
