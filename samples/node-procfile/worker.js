// kiln sample (worker process): prints a line, then a tick every few seconds until stopped.
console.log('node-procfile worker started');
let n = 0;
setInterval(() => console.log(`worker tick ${++n}`), 5000);
