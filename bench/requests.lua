-- wrk script for bench/loadgen.py: POSTs the committed samples in turn (each with its own
-- Content-Type and, for TorchServe, the inference token) and prints one JSON line at the end.
-- Arguments after `--`: pairs of file path and content type. The token comes from the environment
-- (BENCH_TOKEN), never the command line, which every user can read in `ps`.

local prepared = {}
local index = 0

function init(args)
  local token = os.getenv("BENCH_TOKEN")
  for i = 1, #args, 2 do
    local f = assert(io.open(args[i], "rb"))
    local body = f:read("*a")
    f:close()
    local headers = { ["Content-Type"] = args[i + 1] }
    if token and token ~= "" then
      headers["Authorization"] = "Bearer " .. token
    end
    prepared[#prepared + 1] = wrk.format("POST", nil, headers, body)
  end
end

function request()
  index = index % #prepared + 1
  return prepared[index]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}, "latency_us": {"min": %d, "mean": %.1f, "max": %d, "p50": %d, ' ..
    '"p90": %d, "p99": %d}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99)))
end
