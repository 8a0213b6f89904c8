// Drives the engine simulator with Qlik's own client, enigma.js, and the QIX
// schema shipped in its package: every call Butler makes, as enigma.js makes
// it. enigma.js checks the shapes of the answers it turns into API objects
// (qReturn handles and qTypes); the caller (test_engine_sim.py) checks the
// values printed here.
//
//   node check.js <port> <pki dir> <app id>
'use strict';

const fs = require('fs');
const path = require('path');
const enigma = require('enigma.js');
const WebSocket = require('ws');

const [port, pkiDir, appId] = process.argv.slice(2);
const schemaDir = path.join(path.dirname(require.resolve('enigma.js/package.json')), 'schemas');
// The newest schema in the package.
const schemaFile = fs.readdirSync(schemaDir)
  .filter((name) => /^\d+\.\d+\.\d+\.json$/.test(name))
  .sort((a, b) => {
    const x = a.split('.').map(Number);
    const y = b.split('.').map(Number);
    return x[0] - y[0] || x[1] - y[1] || x[2] - y[2];
  })
  .pop();
const schema = JSON.parse(fs.readFileSync(path.join(schemaDir, schemaFile), 'utf8'));

function socketFor(url) {
  return new WebSocket(url, {
    cert: fs.readFileSync(path.join(pkiDir, 'client.pem')),
    key: fs.readFileSync(path.join(pkiDir, 'client_key.pem')),
    ca: fs.readFileSync(path.join(pkiDir, 'root.pem')),
    headers: { 'X-Qlik-User': 'UserDirectory=INTERNAL; UserId=sa_enigma' },
  });
}

async function withSession(url, work) {
  const session = enigma.create({ schema, url, createSocket: socketFor });
  const notifications = [];
  session.on('notification:*', (name) => notifications.push(name));
  const global = await session.open();
  try {
    return await work(global, notifications);
  } finally {
    await session.close();
  }
}

async function main() {
  const out = { schema: schemaFile };
  await withSession(`wss://localhost:${port}/app/engineData`, async (global, notifications) => {
    out.engineVersion = await global.engineVersion();
    out.docList = await global.getDocList();
    try {
      await global.openDoc('no-such-app');
      out.openMissing = 'opened';
    } catch (error) {
      out.openMissing = { code: error.code, message: error.message };
    }
    out.notifications = notifications;
  });
  await withSession(`wss://localhost:${port}/app/${appId}`, async (global) => {
    const doc = await global.openDoc(appId);
    out.docType = doc.type;
    out.layout = await doc.getAppLayout();
    out.reload = await doc.doReloadEx({ qMode: 1, qPartial: true, qDebug: false });
    out.progress = await global.getProgress(0);
    await doc.doSave();
    out.properties = await doc.getAppProperties();
    out.script = await doc.getScript();
    out.connections = await doc.getConnections();
    out.lineage = await doc.getLineage();
    const lists = await doc.createSessionObject({
      qInfo: { qType: 'ButlerAppDump' },
      sheets: { qAppObjectListDef: { qType: 'sheet', qData: {} } },
      dimensions: { qDimensionListDef: { qType: 'dimension' } },
      fields: { qFieldListDef: { qShowSystem: false } },
    });
    out.listsType = [lists.type, lists.genericType];
    out.lists = await lists.getLayout();
    const sheet = await doc.getObject(out.lists.sheets.qAppObjectList.qItems[0].qInfo.qId);
    out.sheetType = [sheet.type, sheet.genericType];
    out.sheetTree = await sheet.getFullPropertyTree();
    const dimension = await doc.getDimension('dim-1');
    out.dimensionType = [dimension.type, dimension.genericType];
    out.dimensionProperties = await dimension.getProperties();
    const variable = await doc.getVariableById('var-1');
    out.variableType = [variable.type, variable.genericType];
  });
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((error) => {
  process.stderr.write(`enigma check failed: ${error.stack || error}\n`);
  process.exit(1);
});
