// kiln sample: answers GET / with a fixed text on $PORT (the buildpack's default is 8080).
const express = require('express');

const app = express();
const port = Number(process.env.PORT || 8080);

app.get('/', (_req, res) => {
  res.type('text/plain').send('Hello from kiln: node-express\n');
});

app.listen(port, () => {
  console.log(`node-express listening on ${port} (NODE_ENV=${process.env.NODE_ENV})`);
});
