// Parse TraceQL queries with Grafana's own grammar (@grafana/lezer-traceql, what Grafana's query
// editor uses). Reads a JSON array of queries on stdin; prints, as JSON, one entry per query:
// the query and the offsets of any syntax error (empty when it parses).
// Usage: node tests/traceql_parse.cjs <node_modules dir> < queries.json
const path = require("path");
const { parser } = require(path.join(process.argv[2], "@grafana/lezer-traceql"));

const queries = JSON.parse(require("fs").readFileSync(0, "utf8"));
const results = queries.map((query) => {
  const errors = [];
  parser.parse(query).iterate({
    enter: (node) => {
      if (node.type.isError) errors.push(node.from);
    },
  });
  return { query, errors };
});
process.stdout.write(JSON.stringify(results));
