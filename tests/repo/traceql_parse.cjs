// Parse TraceQL queries with Grafana's own grammar (@grafana/lezer-traceql, what Grafana's query
// editor uses). Reads a JSON array of queries on stdin; prints, as JSON, one entry per query:
// the query, the offsets of any syntax error (empty when it parses) and the text of every string
// literal (String node), whose escapes the Python side checks against Tempo's lexer rules.
// Usage: node tests/repo/traceql_parse.cjs <node_modules dir> < queries.json
const path = require("path");
const { parser } = require(path.join(process.argv[2], "@grafana/lezer-traceql"));

const queries = JSON.parse(require("fs").readFileSync(0, "utf8"));
const results = queries.map((query) => {
  const errors = [];
  const strings = [];
  parser.parse(query).iterate({
    enter: (node) => {
      if (node.type.isError) errors.push(node.from);
      if (node.type.name === "String") strings.push(query.slice(node.from, node.to));
    },
  });
  return { query, errors, strings };
});
process.stdout.write(JSON.stringify(results));
