-- Argo CD health check for retrainer.dev/RetrainJob.
-- Healthy: phase Succeeded and the Verified condition True (every location checked).
-- Degraded: phase Failed (message from the Failed condition), or Succeeded but Verified False.
-- Progressing: no status yet, Pending/Running/Verifying, or a status older than the spec
-- (status.observedGeneration < metadata.generation: the operator has not caught up).
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

local phase = status.phase
if phase == "Failed" then
  local failed = condition(status, "Failed")
  hs.status = "Degraded"
  if failed ~= nil and failed.message ~= nil and failed.message ~= "" then
    hs.message = failed.message
  elseif failed ~= nil and failed.reason ~= nil then
    hs.message = failed.reason
  else
    hs.message = "RetrainJob failed"
  end
  return hs
end

if phase == "Succeeded" then
  local name = "The version"
  if status.version ~= nil then
    name = "Version " .. tostring(status.version)
  end
  local verified = condition(status, "Verified")
  if verified ~= nil and verified.status == "True" then
    hs.status = "Healthy"
    hs.message = name .. " trained and verified"
    return hs
  end
  if verified ~= nil and verified.status == "False" then
    hs.status = "Degraded"
    hs.message = verified.message or "Verification failed"
    return hs
  end
  hs.message = name .. " trained; waiting for verification"
  return hs
end

if phase == "Running" and status.progress ~= nil and status.progress.text ~= nil then
  hs.message = "Training, epoch " .. status.progress.text
elseif phase ~= nil then
  hs.message = phase
end
return hs
