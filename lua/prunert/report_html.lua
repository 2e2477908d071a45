-- prunert.report_html: one self-contained HTML page with a recipe's results. SVG charts are
-- inlined as markup and PNG images as base64 data URIs, so the page can be mailed or archived
-- alone; each image's file name is shown (and linked) beside it. No script anywhere.
--
--   report_html.write(out .. "/report.html", {
--       title = "LeNet-5, L1 filter pruning", intro = "one paragraph",
--       summary = {header = {"", "dense", "pruned"}, rows = {{"accuracy", "91.0%", "90.2%"}}},
--       tables = {{title = "Per layer", header = {...}, rows = {...}}},   -- e.g. layer_table(rep)
--       images = {{title = "Accuracy", path = out .. "/accuracy.svg"}, {title = "conv1 mask", path = "...png"}},
--       notes = {"what is missing or worth knowing"},
--   })
local report_html = {}

function report_html.escape(s)
    return (tostring(s):gsub("[&<>\"']", {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
                                          ['"'] = "&quot;", ["'"] = "&#39;"}))
end
local esc = report_html.escape

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

function report_html.base64(data)
    local out = {}
    for i = 1, #data, 3 do
        local a, b, c = data:byte(i, i + 2)
        local n = a * 65536 + (b or 0) * 256 + (c or 0)
        local c1, c2, c3, c4 = n >> 18, (n >> 12) & 63, (n >> 6) & 63, n & 63
        out[#out + 1] = B64:sub(c1 + 1, c1 + 1) .. B64:sub(c2 + 1, c2 + 1) ..
            (b and B64:sub(c3 + 1, c3 + 1) or "=") .. (c and B64:sub(c4 + 1, c4 + 1) or "=")
    end
    return table.concat(out)
end

local function read(path)
    local f, err = io.open(path, "rb")
    if not f then error("report_html: " .. err, 0) end
    local s = f:read("a")
    f:close()
    return s
end

local function basename(path) return (path:match("([^/]+)$") or path) end

local function cell(v)
    if type(v) == "number" then
        if math.type(v) == "integer" then return tostring(v) end
        return string.format("%.4g", v)
    end
    return esc(v == nil and "" or v)
end

local function html_table(t)
    local s = {'<table>'}
    if t.header then
        local hs = {}
        for i, h in ipairs(t.header) do hs[i] = "<th>" .. cell(h) .. "</th>" end
        s[#s + 1] = "<thead><tr>" .. table.concat(hs) .. "</tr></thead>"
    end
    s[#s + 1] = "<tbody>"
    for _, r in ipairs(t.rows or {}) do
        local cs = {}
        local n = t.header and #t.header or #r
        for i = 1, n do
            local tag = i == 1 and "th" or "td"
            cs[i] = "<" .. tag .. ">" .. cell(r[i]) .. "</" .. tag .. ">"
        end
        s[#s + 1] = "<tr>" .. table.concat(cs) .. "</tr>"
    end
    s[#s + 1] = "</tbody></table>"
    return table.concat(s, "\n")
end

-- PNG width and height from the IHDR chunk (bytes 17..24).
local function png_size(data)
    if #data < 24 or data:sub(1, 8) ~= "\137PNG\r\n\26\n" then return nil end
    return string.unpack(">I4I4", data, 17)
end

local function figure(img)
    local path = img.path
    local name = basename(path)
    local body
    if path:match("%.svg$") then
        body = read(path):gsub("^%s*<%?xml.-%?>%s*", "")
    elseif path:match("%.png$") then
        local data = read(path)
        local w, h = png_size(data)
        if not w then error("report_html: " .. path .. " is not a PNG file", 0) end
        -- Mask images are small (one pixel per weight); scale them up without smoothing. A wide
        -- one (conv2: 50 filters x 500 weights) gets taller rows so each filter stays visible.
        local sx = math.max(1, math.min(8, 480 // w, 480 // h))
        local sy = math.max(sx, math.min(8, 160 // h))
        body = string.format('<img class="mask" src="data:image/png;base64,%s" width="%d" height="%d" alt="%s">',
            report_html.base64(data), w * sx, h * sy, esc(img.title or name))
        img.caption = img.caption or string.format("%d x %d pixels; white = kept, black = pruned", w, h)
    else
        error("report_html: only .svg and .png images can be inlined, got " .. path, 0)
    end
    local s = {'<figure>'}
    if img.title then s[#s + 1] = "<h3>" .. esc(img.title) .. "</h3>" end
    s[#s + 1] = body
    s[#s + 1] = string.format('<figcaption>%s<a href="%s">%s</a></figcaption>',
        img.caption and (esc(img.caption) .. " &middot; ") or "", esc(name), esc(name))
    s[#s + 1] = "</figure>"
    return table.concat(s, "\n")
end

-- Rows of pr.prune.report(...) as a table for the page.
function report_html.layer_table(rep, title)
    local rows = {}
    local fmt = require("prunert.prune.report").fmt_count
    for _, l in ipairs(rep.layers) do
        rows[#rows + 1] = {l.name, l.kind, "[" .. table.concat(l.shape or {}, ",") .. "]", l.params, l.nonzero,
            string.format("%.2f%%", 100 * l.sparsity), fmt(l.flops), fmt(l.effective_flops)}
    end
    rows[#rows + 1] = {"total", "", "", rep.params, rep.nonzero, string.format("%.2f%%", 100 * rep.sparsity),
        fmt(rep.flops), fmt(rep.effective_flops)}
    return {title = title or "Per layer", rows = rows,
            header = {"layer", "kind", "weight", "params", "nonzero", "sparsity", "FLOPs", "eff. FLOPs"}}
end

local STYLE = [[
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1120px;
       color: #222; background: #fff; padding: 0 16px; }
h1 { font-size: 24px; margin-bottom: 4px; }
h2 { font-size: 18px; border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 28px; }
h3 { font-size: 14px; margin: 4px 0; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
thead th { background: #f0f3f7; text-align: center; }
tbody th { text-align: left; font-weight: normal; background: #fafafa; }
figure { display: inline-block; vertical-align: top; margin: 8px 12px 16px 0; max-width: 100%; overflow-x: auto; }
figcaption { font-size: 12px; color: #555; }
img.mask { image-rendering: pixelated; image-rendering: crisp-edges; border: 1px solid #888; background: #000; }
.meta { color: #666; font-size: 12px; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; font-size: 12px; }
]]

-- The page as a string.
function report_html.render(o)
    if type(o) ~= "table" then error("report_html.render: expected a table of sections", 2) end
    local s = {"<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
               "<title>" .. esc(o.title or "prunert report") .. "</title>", "<style>" .. STYLE .. "</style>",
               "</head>", "<body>"}
    s[#s + 1] = "<h1>" .. esc(o.title or "prunert report") .. "</h1>"
    s[#s + 1] = string.format('<p class="meta">%s &middot; generated %s</p>', esc(o.subtitle or "prunert"),
        esc(os.date("!%Y-%m-%d %H:%M UTC")))
    if o.intro then s[#s + 1] = "<p>" .. esc(o.intro) .. "</p>" end
    if o.summary then
        s[#s + 1] = "<h2>" .. esc(o.summary.title or "Summary") .. "</h2>"
        s[#s + 1] = html_table(o.summary)
    end
    for _, t in ipairs(o.tables or {}) do
        s[#s + 1] = "<h2>" .. esc(t.title or "") .. "</h2>"
        s[#s + 1] = html_table(t)
    end
    if o.images and #o.images > 0 then
        s[#s + 1] = "<h2>Plots</h2>"
        for _, img in ipairs(o.images) do s[#s + 1] = figure(img) end
    end
    if o.notes and #o.notes > 0 then
        s[#s + 1] = "<h2>Notes</h2><ul>"
        for _, n in ipairs(o.notes) do s[#s + 1] = "<li>" .. esc(n) .. "</li>" end
        s[#s + 1] = "</ul>"
    end
    if o.command then s[#s + 1] = "<h2>Command</h2><pre>" .. esc(o.command) .. "</pre>" end
    s[#s + 1] = "</body></html>"
    return table.concat(s, "\n") .. "\n"
end

function report_html.write(path, o)
    local text = report_html.render(o)
    local f, err = io.open(path, "wb")
    if not f then error("report_html: " .. err, 2) end
    f:write(text)
    f:close()
    return path
end

return report_html
