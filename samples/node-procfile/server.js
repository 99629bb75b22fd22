// kiln sample (web process): answers GET / with a fixed text on $PORT, no dependencies.
const http = require('node:http');

const port = Number(process.env.PORT || 8080);
http
  .createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('Hello from kiln: node-procfile\n');
  })
  .listen(port, () => console.log(`node-procfile web listening on ${port}`));
