-- prunert.plot: charts as self-contained SVG files (no script, no fonts to fetch) and weight
-- masks as PNG images. Each function writes one file and returns its path.
--
--   plot.bars(path, {title, ylabel, categories = {"dense", "pruned"},
--                    series = {{name = "accuracy", values = {0.91, 0.90}}}, format = "%.3f"})
--   plot.lines(path, {title, xlabel, ylabel, series = {{name = "0.weight", x = {...}, y = {...}}}})
--   plot.mask(path, weight)          white = kept, black = pruned; conv [O,C,kh,kw] -> [O, C*kh*kw]
--   plot.svg_bars(o), plot.svg_lines(o)   the SVG text without writing it
local core = require "prunert.core"

local plot = {}

local W, H = 520, 330
local M = {left = 64, right = 16, top = 60, bottom = 56}
local PALETTE = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
                 "#ff9da7", "#9c755f", "#bab0ac"}
plot.PALETTE = PALETTE

-- XML text and attribute escaping.
function plot.escape(s)
    return (tostring(s):gsub("[&<>\"']", {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
                                          ['"'] = "&quot;", ["'"] = "&#39;"}))
end
local esc = plot.escape

local function num(v) return string.format("%.2f", v) end

local function write(path, text)
    if type(path) ~= "string" or path == "" then error("plot: path must be a file name", 3) end
    local f, err = io.open(path, "wb")
    if not f then error("plot: " .. err, 3) end
    f:write(text)
    f:close()
    return path
end

local function finite(v) return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge end

-- Round tick steps (1, 2, 5 x 10^k) covering [lo, hi] with about n ticks.
local function ticks(lo, hi, n)
    if hi <= lo then hi = lo + 1 end
    local raw = (hi - lo) / (n or 5)
    local mag = 10 ^ math.floor(math.log(raw, 10))
    local step = mag
    for _, f in ipairs({1, 2, 2.5, 5, 10}) do
        if raw <= f * mag then step = f * mag break end
    end
    local a, b = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    local list = {}
    for v = a, b + step / 2, step do list[#list + 1] = v end
    return list, a, b, step
end

local function tick_label(v, step)
    if math.abs(v) >= 1e6 then return string.format("%.3gM", v / 1e6) end
    if math.abs(v) >= 1e4 then return string.format("%.4gk", v / 1e3) end
    if step >= 1 and step % 1 == 0 then return string.format("%d", math.floor(v + 0.5)) end
    -- enough decimals for the step (2.5 needs one, 0.25 two)
    local digits = 0
    while digits < 6 and math.abs(step * 10 ^ digits - math.floor(step * 10 ^ digits + 0.5)) > 1e-6 do
        digits = digits + 1
    end
    return string.format("%." .. digits .. "f", v)
end

local function header(o, w, h)
    local s = {}
    s[#s + 1] = string.format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" ' ..
        'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">', w, h, w, h)
    s[#s + 1] = string.format('<rect width="%d" height="%d" fill="#ffffff"/>', w, h)
    if o.title then
        s[#s + 1] = string.format('<text x="%d" y="24" text-anchor="middle" font-size="16" font-weight="bold">%s</text>',
            w // 2, esc(o.title))
    end
    return s
end

-- Y axis with grid lines; returns the function mapping a value to a y coordinate.
local function y_axis(s, lo, hi, o)
    local tk, a, b, step = ticks(lo, hi, 5)
    local y0, y1 = H - M.bottom, M.top
    local function y(v) return y0 - (v - a) / (b - a) * (y0 - y1) end
    for _, v in ipairs(tk) do
        s[#s + 1] = string.format('<line x1="%d" x2="%d" y1="%s" y2="%s" stroke="#e0e0e0"/>', M.left, W - M.right, num(y(v)), num(y(v)))
        s[#s + 1] = string.format('<text x="%d" y="%s" text-anchor="end" dominant-baseline="middle" fill="#444">%s</text>',
            M.left - 6, num(y(v)), esc(tick_label(v, step)))
    end
    s[#s + 1] = string.format('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#333"/>', M.left, M.left, y1, y0)
    if o.ylabel then
        s[#s + 1] = string.format('<text transform="translate(16 %d) rotate(-90)" text-anchor="middle">%s</text>',
            (y0 + y1) // 2, esc(o.ylabel))
    end
    return y, a, b
end

local function legend(s, names)
    if #names < 2 then return end
    local x = M.left + 4
    local y = 46
    for i, name in ipairs(names) do
        local c = PALETTE[(i - 1) % #PALETTE + 1]
        s[#s + 1] = string.format('<rect x="%d" y="%d" width="12" height="12" fill="%s"/>', x, y - 10, c)
        s[#s + 1] = string.format('<text x="%d" y="%d">%s</text>', x + 16, y, esc(name))
        x = x + 28 + 7 * #tostring(name)
    end
end

local function check_series(o, who)
    if type(o) ~= "table" or type(o.series) ~= "table" or #o.series == 0 then
        error(who .. ": give series = {{name = ..., ...}, ...}", 3)
    end
end

-- Grouped bars: one group per category, one bar per series, each labelled with its value.
function plot.svg_bars(o)
    check_series(o, "plot.bars")
    local cats = o.categories
    if type(cats) ~= "table" or #cats == 0 then error("plot.bars: give categories = {...}", 2) end
    local lo, hi = 0, 0
    for si, ser in ipairs(o.series) do
        if type(ser.values) ~= "table" or #ser.values ~= #cats then
            error(string.format("plot.bars: series %d (%s) has %d values for %d categories", si,
                tostring(ser.name), type(ser.values) == "table" and #ser.values or 0, #cats), 2)
        end
        for _, v in ipairs(ser.values) do
            if finite(v) then lo, hi = math.min(lo, v), math.max(hi, v) end
        end
    end
    if o.ymax then hi = o.ymax end
    if o.ymin then lo = o.ymin end
    local s = header(o, W, H)
    local y, a = y_axis(s, lo, hi, o)
    local base = y(math.max(a, 0))
    local plot_w = W - M.left - M.right
    local gw = plot_w / #cats
    local bw = math.min(60, gw * 0.8 / #o.series)
    local fmt = o.format or "%.4g"
    for ci, cat in ipairs(cats) do
        local gx = M.left + (ci - 1) * gw + (gw - bw * #o.series) / 2
        for si, ser in ipairs(o.series) do
            local v = ser.values[ci]
            local x = gx + (si - 1) * bw
            local c = PALETTE[(si - 1) % #PALETTE + 1]
            if finite(v) then
                local yt = y(v)
                local top, hgt = math.min(yt, base), math.abs(base - yt)
                s[#s + 1] = string.format('<rect x="%s" y="%s" width="%s" height="%s" fill="%s"><title>%s: %s</title></rect>',
                    num(x + 1), num(top), num(bw - 2), num(hgt), c, esc(tostring(ser.name) .. " / " .. tostring(cat)),
                    esc(string.format(fmt, v)))
                s[#s + 1] = string.format('<text x="%s" y="%s" text-anchor="middle" font-size="11" fill="#222">%s</text>',
                    num(x + bw / 2), num(top - 4), esc(string.format(fmt, v)))
            end
        end
        s[#s + 1] = string.format('<text x="%s" y="%d" text-anchor="middle">%s</text>',
            num(M.left + (ci - 0.5) * gw), H - M.bottom + 18, esc(cat))
    end
    s[#s + 1] = string.format('<line x1="%d" x2="%d" y1="%s" y2="%s" stroke="#333"/>', M.left, W - M.right, num(base), num(base))
    if o.xlabel then
        s[#s + 1] = string.format('<text x="%d" y="%d" text-anchor="middle">%s</text>', (M.left + W - M.right) // 2,
            H - 14, esc(o.xlabel))
    end
    local names = {}
    for i, ser in ipairs(o.series) do names[i] = ser.name or ("series " .. i) end
    legend(s, names)
    s[#s + 1] = "</svg>"
    return table.concat(s, "\n") .. "\n"
end

-- Lines with point markers: one per series, x and y lists of the same length.
function plot.svg_lines(o)
    check_series(o, "plot.lines")
    local xlo, xhi, ylo, yhi = math.huge, -math.huge, math.huge, -math.huge
    for si, ser in ipairs(o.series) do
        if type(ser.x) ~= "table" or type(ser.y) ~= "table" or #ser.x ~= #ser.y then
            error(string.format("plot.lines: series %d (%s) needs x and y lists of the same length", si, tostring(ser.name)), 2)
        end
        for i = 1, #ser.x do
            if finite(ser.x[i]) and finite(ser.y[i]) then
                xlo, xhi = math.min(xlo, ser.x[i]), math.max(xhi, ser.x[i])
                ylo, yhi = math.min(ylo, ser.y[i]), math.max(yhi, ser.y[i])
            end
        end
    end
    if xlo > xhi then xlo, xhi, ylo, yhi = 0, 1, 0, 1 end
    -- Long series (a loss per step) are averaged in buckets down to max_points points.
    local maxp = o.max_points or 200
    local series = {}
    for si, ser in ipairs(o.series) do
        if #ser.x > maxp then
            local per = math.ceil(#ser.x / maxp)
            local xs, ys = {}, {}
            for i = 1, #ser.x, per do
                local sx, sy, n = 0, 0, 0
                for j = i, math.min(#ser.x, i + per - 1) do
                    if finite(ser.x[j]) and finite(ser.y[j]) then sx, sy, n = sx + ser.x[j], sy + ser.y[j], n + 1 end
                end
                if n > 0 then xs[#xs + 1], ys[#ys + 1] = sx / n, sy / n end
            end
            series[si] = {name = ser.name, x = xs, y = ys}
        else
            series[si] = ser
        end
    end
    xlo, xhi = o.xmin or xlo, o.xmax or xhi
    ylo, yhi = o.ymin or ylo, o.ymax or yhi
    if yhi <= ylo then yhi = ylo + 1 end
    local s = header(o, W, H)
    local y = y_axis(s, ylo, yhi, o)
    local tk, a, b, step = ticks(xlo, xhi, 8)
    local x0, x1 = M.left, W - M.right
    local function x(v) return x0 + (v - a) / (b - a) * (x1 - x0) end
    for _, v in ipairs(tk) do
        s[#s + 1] = string.format('<line x1="%s" x2="%s" y1="%d" y2="%d" stroke="#333"/>', num(x(v)), num(x(v)),
            H - M.bottom, H - M.bottom + 4)
        s[#s + 1] = string.format('<text x="%s" y="%d" text-anchor="middle" fill="#444">%s</text>', num(x(v)),
            H - M.bottom + 18, esc(tick_label(v, step)))
    end
    s[#s + 1] = string.format('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#333"/>', x0, x1, H - M.bottom, H - M.bottom)
    if o.xlabel then
        s[#s + 1] = string.format('<text x="%d" y="%d" text-anchor="middle">%s</text>', (x0 + x1) // 2, H - 14, esc(o.xlabel))
    end
    for si, ser in ipairs(series) do
        local c = PALETTE[(si - 1) % #PALETTE + 1]
        local pts = {}
        for i = 1, #ser.x do
            if finite(ser.x[i]) and finite(ser.y[i]) then pts[#pts + 1] = num(x(ser.x[i])) .. "," .. num(y(ser.y[i])) end
        end
        s[#s + 1] = string.format('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>', c, table.concat(pts, " "))
        for i = 1, #ser.x do
            if finite(ser.x[i]) and finite(ser.y[i]) then
                s[#s + 1] = string.format('<circle cx="%s" cy="%s" r="3" fill="%s"><title>%s: (%.4g, %.4g)</title></circle>',
                    num(x(ser.x[i])), num(y(ser.y[i])), c, esc(ser.name or ""), ser.x[i], ser.y[i])
            end
        end
    end
    local names = {}
    for i, ser in ipairs(series) do names[i] = ser.name or ("series " .. i) end
    legend(s, names)
    s[#s + 1] = "</svg>"
    return table.concat(s, "\n") .. "\n"
end

function plot.bars(path, o) return write(path, plot.svg_bars(o)) end
function plot.lines(path, o) return write(path, plot.svg_lines(o)) end

-- The 0/1 keep-map of a weight as a 2-D float tensor: its mask when it has one, else its
-- non-zeros; conv [O, C, kh, kw] becomes [O, C*kh*kw] (one row per filter), linear stays [out, in].
function plot.mask_image(w)
    if type(w) ~= "userdata" or not w.shape then error("plot.mask: expected a weight tensor", 3) end
    local m = w:mask() or w:ne(0)
    if m:dtype() ~= "float32" then m = m:float() end
    local shape = m:shape()
    if #shape == 1 then return m:reshape(1, shape[1]) end
    if #shape < 2 then error("plot.mask: the weight has no rows", 3) end
    return m:reshape(shape[1], -1)
end

function plot.mask(path, w)
    local img = plot.mask_image(w)
    local ok, err = core.png_write(path, img)
    if not ok then error("plot.mask: " .. tostring(err), 2) end
    return path
end

return plot
