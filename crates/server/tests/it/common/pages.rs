//! A built web dir for tests that need the pages served without building
//! them from npm: small pages of our own, in the layout scripts/build-web
//! writes (the real pages are tested in the browser, web/test).

use std::path::Path;

/// The chart page's script: text long enough to be worth compressing.
pub fn app_js() -> String {
    (0..400)
        .map(|i| format!("console.log(\"candle {i}\");\n"))
        .collect()
}

/// Writes a chart, a docs and an AsyncAPI page under `dir`.
pub fn build(dir: &Path) {
    let write = |path: &str, text: &str| {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "chart/index.html",
        "<!doctype html><title>chart</title><script src=\"/chart/app.js\"></script>",
    );
    write("chart/app.js", &app_js());
    write("chart/styles/chart.css", "body { margin: 0 }");
    write("chart/.stamp", "inputs hash");
    write("docs/index.html", "<!doctype html><title>REST docs</title>");
    write(
        "asyncapi/index.html",
        "<!doctype html><title>WebSocket docs</title>",
    );
}
