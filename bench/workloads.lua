-- wrk scripts for the SCIM workloads. The workload and its data come from the environment:
-- BENCH_WORKLOAD, BENCH_DIR (token, user_ids, big_group, small_group, spare_users), BENCH_USERS.
local workload = os.getenv("BENCH_WORKLOAD")
local dir = os.getenv("BENCH_DIR")
local nusers = tonumber(os.getenv("BENCH_USERS") or "1000")
local prefix = os.getenv("BENCH_PREFIX") or ""

local function read(name)
  local f = assert(io.open(dir .. "/" .. name))
  local s = f:read("*a")
  f:close()
  return s
end

local token = read("token"):gsub("%s+$", "")
local ids = {}
-- Both seeders name the user at line i of user_ids "user<i-1>@bench.test": the userName an
-- identity provider sends as the member's display.
local user_names = {}
for line in read("user_ids"):gmatch("[^\n]+") do
  ids[#ids + 1] = line
  user_names[line] = "user" .. (#ids - 1) .. "@bench.test"
end
local big, small = read("big_group"), read("small_group")
-- Users in no group: each wrk thread adds its own SPARES of them one by one, then removes them
-- one by one, so every PATCH changes the membership (an add of a member or a remove of a
-- non-member would be a no-op) even with several requests of the thread in flight.
local spares = {}
for line in read("spare_users"):gmatch("[^\n]+") do spares[#spares + 1] = line end
local SPARES = 64
local counter = 0
local patches = 0
local thread_id = 0
local created = 0
-- wrk does not seed math.random: names made unique per run, so reruns do not collide.
local run_salt = os.time()

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
end

local function headers()
  return { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/scim+json" }
end

-- IDP: the request exactly as Okta sends it (tests/replays/okta_group_push.json): each added
-- member with its display, and never a query (BENCH_PATCH_QUERY is ignored).
local function patch_member(group, idp)
  local k = patches % SPARES
  local op = (math.floor(patches / SPARES) % 2 == 0) and "add" or "remove"
  patches = patches + 1
  local spare = spares[((tid or 1) - 1) * SPARES + k + 1]
  local body
  if op == "add" then
    local display = idp and (',"display":"' .. assert(user_names[spare], "spare user not in user_ids") .. '"') or ""
    body = '{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"members","value":[{"value":"' .. spare .. '"' .. display .. '}]}]}'
  else
    body = '{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"members[value eq \\"' .. spare .. '\\"]"}]}'
  end
  local query = idp and "" or (os.getenv("BENCH_PATCH_QUERY") or "")
  return wrk.format("PATCH", prefix .. "/Groups/" .. group .. query, headers(), body)
end

function request()
  counter = counter + 1
  if workload == "lookup" then
    local i = math.random(0, nusers - 1)
    return wrk.format("GET", prefix .. "/Users?filter=userName%20eq%20%22user" .. i .. "%40bench.test%22", headers())
  elseif workload == "create" then
    created = created + 1
    local name = string.format("new-%d-%d-%d@bench.test", run_salt, tid or 0, created)
    return wrk.format("POST", prefix .. "/Users", headers(),
      '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"' .. name .. '","active":true}')
  elseif workload == "put" then
    local i = math.random(1, #ids)
    local name = "user" .. (i - 1) .. "@bench.test"
    return wrk.format("PUT", prefix .. "/Users/" .. ids[i], headers(),
      '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"' .. name .. '","displayName":"Okta ' .. counter .. '","active":true,"emails":[{"value":"' .. name .. '","type":"work","primary":true}]}')
  elseif workload == "patch_big" then
    return patch_member(big)
  elseif workload == "patch_small" then
    return patch_member(small)
  elseif workload == "patch_big_idp" then
    return patch_member(big, true)
  elseif workload == "patch_small_idp" then
    return patch_member(small, true)
  elseif workload == "groups_page" then
    local pages = math.max(1, math.floor((tonumber(os.getenv("BENCH_NGROUPS") or "10000")) / 100))
    local start = math.random(0, pages - 1) * 100 + 1
    return wrk.format("GET", prefix .. "/Groups?excludedAttributes=members&count=100&startIndex=" .. start, headers())
  else
    return wrk.format("GET", "/", headers())
  end
end

function done(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format('RESULT {"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,"errors":%d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, errors))
end
