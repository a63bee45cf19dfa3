-- Argo CD health check for retrainer.dev/ModelLine.
-- Healthy: Ready True and no failed scrub; the message names the latest verified version and
-- the champion.
-- Degraded: Ready False (a schedule the operator cannot use, or a lost line whose evidence
-- cannot be read), Scrubbed False (a stored copy changed or went missing), or ChampionInSync
-- False (MLflow's alias does not name the champion the status names); the message is the
-- condition's.
-- Progressing: no status yet, or a status older than the spec.
local hs = { status = "Progressing", message = "Waiting for the operator" }

local function condition(status, type)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local status = obj.status
if status == nil then
  return hs
end

local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

for _, type in ipairs({ "Ready", "Scrubbed", "ChampionInSync" }) do
  local c = condition(status, type)
  if c ~= nil and c.status == "False" then
    hs.status = "Degraded"
    hs.message = c.message or c.reason or (type .. " is False")
    return hs
  end
end

local ready = condition(status, "Ready")
if ready == nil or ready.status ~= "True" then
  return hs
end
hs.status = "Healthy"
local parts = {}
if status.latestVerified ~= nil then
  table.insert(parts, "latest verified v" .. tostring(status.latestVerified))
else
  table.insert(parts, "no verified version yet")
end
if status.champion ~= nil and status.champion.version ~= nil then
  table.insert(parts, "champion v" .. tostring(status.champion.version))
end
hs.message = table.concat(parts, ", ")
return hs
