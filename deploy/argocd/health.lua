-- Argo CD health check for metastudio.huaweicloud.com/ActivationCode.
-- Lua 5.1 (gopher-lua). `obj` is the live object; see README.md here.
-- The operator follows kstatus: Ready and Synced, plus the "abnormal-true"
-- conditions Reconciling and Stalled, present only while they are True.
--   Progressing  no status or conditions yet; the status (or Ready) describes
--                an older generation; Reconciling=True (a retry is
--                scheduled after a transient failure); Ready is Unknown
--   Suspended    Ready's reason is Suspended (spec.suspend is true)
--   Degraded     Stalled=True (progress needs a human: the message says what
--                to do); Ready=False without Reconciling (older operators)
--   Healthy      Ready=True for the current generation
local hs = {}

local function condition(conditions, type_)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function describe(c)
  local text = ""
  if c.reason ~= nil and c.reason ~= "" then
    text = c.reason
  end
  if c.message ~= nil and c.message ~= "" then
    if text ~= "" then
      text = text .. ": "
    end
    text = text .. c.message
  end
  return text
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

local status = obj.status
if status == nil or status.conditions == nil or #status.conditions == 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local ready = condition(status.conditions, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end
if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition of generation " .. tostring(generation)
  return hs
end

if ready.reason == "Suspended" then
  hs.status = "Suspended"
  hs.message = describe(ready)
  return hs
end

local stalled = condition(status.conditions, "Stalled")
if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

local reconciling = condition(status.conditions, "Reconciling")
if is_true(reconciling) then
  hs.status = "Progressing"
  hs.message = describe(reconciling)
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
elseif ready.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(ready)
else
  hs.status = "Progressing"
  hs.message = describe(ready)
  if hs.message == "" then
    hs.message = "Ready is Unknown"
  end
end
return hs
