// Node-RED settings for the peer run of scripts/bench_hub.py (headless, no editor).
// Started as: node-red --settings settings.js --userDir <tmp> <tmp>/flows.json
// The broker and InfluxDB addresses come from the environment (BENCH_MQTT_PORT,
// BENCH_INFLUX_PORT, BENCH_INFLUX_DB), substituted into flows.json by Node-RED.
module.exports = {
    uiHost: "127.0.0.1",
    uiPort: parseInt(process.env.BENCH_NODE_RED_PORT || "0", 10),
    disableEditor: true,
    httpAdminRoot: false,
    httpNodeRoot: false,
    httpStatic: false,
    credentialSecret: false,
    flowFilePretty: true,
    mqttReconnectTime: 1000,
    functionExternalModules: false,
    externalModules: { autoInstall: false, palette: { allowInstall: false } },
    telemetry: { enabled: false },
    diagnostics: { enabled: false },
    runtimeState: { enabled: false },
    logging: { console: { level: "info", metrics: false, audit: false } },
    contextStorage: { default: { module: "memory" } },
};
