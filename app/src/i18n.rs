//! The studio's words in English and Simplified Chinese: one [`Ui`] value per language, and the choice
//! of language for a request (the `zimage_lang` cookie first, then `Accept-Language`).
//!
//! A catalogue is a plain struct, so a string missing in one language is a compile error (a missing
//! field), and strings with numbers in them are functions. Adding a string is one field here and one
//! line in each of [`EN`] and [`ZH_CN`].

/// A language of the studio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Lang {
    #[default]
    En,
    ZhCn,
}

/// Under this path, `/{tag}` sets the cookie and goes back to the studio (works before hydration too).
pub const LANGUAGE_PATH: &str = "/language";

/// The cookie that remembers a browser's choice (read by the server, so its first render is right).
pub const LANG_COOKIE: &str = "zimage_lang";

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::ZhCn];

    /// The BCP 47 tag, as in `<html lang>`, the cookie and `/language/{tag}`.
    pub const fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhCn => "zh-CN",
        }
    }

    /// The language of a tag we wrote (`en`, `zh-CN`), case-insensitively; `None` for others.
    pub fn from_tag(tag: &str) -> Option<Lang> {
        Lang::ALL
            .into_iter()
            .find(|lang| lang.tag().eq_ignore_ascii_case(tag.trim()))
    }

    /// The best language for an `Accept-Language` header: the first of highest weight whose primary
    /// subtag we speak (any `zh` reads Simplified Chinese better than English), else English.
    pub fn from_accept_language(header: &str) -> Lang {
        let mut best: Option<(u16, Lang)> = None;
        for range in header.split(',') {
            let mut parts = range.split(';');
            let tag = parts.next().unwrap_or_default().trim();
            let weight = parts
                .find_map(|parameter| parameter.trim().strip_prefix("q="))
                .map_or(1000, parse_weight);
            let primary = tag.split('-').next().unwrap_or_default();
            let lang = if primary.eq_ignore_ascii_case("zh") {
                Lang::ZhCn
            } else if primary.eq_ignore_ascii_case("en") {
                Lang::En
            } else {
                continue;
            };
            if weight > 0 && best.is_none_or(|(best_weight, _)| weight > best_weight) {
                best = Some((weight, lang));
            }
        }
        best.map_or(Lang::En, |(_, lang)| lang)
    }

    /// The language of a request: the remembered choice, else the browser's preference.
    pub fn negotiate(cookie: Option<&str>, accept_language: Option<&str>) -> Lang {
        cookie
            .and_then(Lang::from_tag)
            .unwrap_or_else(|| accept_language.map_or(Lang::En, Lang::from_accept_language))
    }

    /// The gateway's address that remembers this language on the device and goes back to the studio.
    pub fn switch_path(self) -> String {
        format!("{}/{}", LANGUAGE_PATH, self.tag())
    }

    /// The other language: the one the switch on the page offers.
    pub const fn other(self) -> Lang {
        match self {
            Lang::En => Lang::ZhCn,
            Lang::ZhCn => Lang::En,
        }
    }

    /// This language's words.
    pub const fn ui(self) -> &'static Ui {
        match self {
            Lang::En => &EN,
            Lang::ZhCn => &ZH_CN,
        }
    }
}

/// The language of the page being rendered: the one the gateway chose for this request (provided as
/// context before the app renders), or in the browser the one of the document the gateway rendered
/// (the root component provides it), so hydration finds the same words.
pub fn use_lang() -> Lang {
    leptos::prelude::use_context::<Lang>().unwrap_or_default()
}

/// The words of the page being rendered.
pub fn use_ui() -> &'static Ui {
    use_lang().ui()
}

/// A `q=` weight in thousandths (`q=0.8` is 800); anything unreadable counts as 0 (not wanted).
fn parse_weight(text: &str) -> u16 {
    let Ok(value) = text.trim().parse::<f32>() else {
        return 0;
    };
    (value.clamp(0.0, 1.0) * 1000.0).round() as u16
}

impl Ui {
    /// The words for a strength.
    pub fn strength_words(&self, words: crate::form::StrengthWords) -> &'static str {
        use crate::form::StrengthWords;
        match words {
            StrengthWords::ALittle => self.strength_a_little,
            StrengthWords::Some => self.strength_some,
            StrengthWords::ALot => self.strength_a_lot,
            StrengthWords::Most => self.strength_most,
            StrengthWords::Everything => self.strength_everything,
        }
    }
}

/// Every visible string of the studio page, in one language.
#[derive(Debug)]
pub struct Ui {
    /// The language's own name, shown on the switch of the other language's page.
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub language: &'static str,
    // The page frame.
    pub pair_phone: &'static str,
    pub pair_hint: &'static str,
    pub not_found_title: &'static str,
    pub not_found_heading: &'static str,
    pub not_found_text: &'static str,
    pub back_to_studio: &'static str,
    // The form.
    pub form_label: &'static str,
    pub prompt: &'static str,
    pub prompt_placeholder: &'static str,
    pub examples: &'static str,
    /// Prompts to start from: the short label on the button and the prompt it fills in.
    pub example_prompts: [(&'static str, &'static str); 3],
    pub aspect_ratio: &'static str,
    pub seed: &'static str,
    pub seed_placeholder: &'static str,
    pub roll_seed: &'static str,
    pub random_every_time: &'static str,
    pub seed_hint: &'static str,
    pub seed_invalid: fn(u64) -> String,
    pub needs_javascript: &'static str,
    // Starting from a picture, and painting over a part of it.
    pub source_legend: &'static str,
    pub choose_picture: &'static str,
    pub picture_hint: &'static str,
    pub uploading_picture: &'static str,
    /// The chosen picture's alternative text.
    pub chosen_picture: &'static str,
    pub remove_picture: &'static str,
    /// The ratio chip that keeps the picture's shape.
    pub picture_shape: &'static str,
    pub strength: &'static str,
    pub strength_a_little: &'static str,
    pub strength_some: &'static str,
    pub strength_a_lot: &'static str,
    pub strength_most: &'static str,
    pub strength_everything: &'static str,
    /// What the strength control says: its words and its number.
    pub strength_value: fn(&str, &str) -> String,
    pub start_from_this: &'static str,
    pub paint_over: &'static str,
    pub painting_hint: &'static str,
    pub painting_canvas: &'static str,
    pub brush_size: &'static str,
    pub brush_small: &'static str,
    pub brush_medium: &'static str,
    pub brush_large: &'static str,
    pub undo: &'static str,
    pub clear: &'static str,
    pub show_painting: &'static str,
    pub done_painting: &'static str,
    pub painted_part_changes: &'static str,
    pub mask_not_made: &'static str,
    /// The fact naming the picture an image started from, in the viewer.
    pub started_from: &'static str,
    pub generate: &'static str,
    pub sending: &'static str,
    pub cancel: &'static str,
    // The stage and the progress.
    pub result: &'static str,
    pub live_preview: &'static str,
    pub image_appears_here: &'static str,
    pub elapsed_time: &'static str,
    pub progress: &'static str,
    pub reconnecting: &'static str,
    pub cancelling: &'static str,
    pub queued_next: &'static str,
    pub queued_at: fn(u32) -> String,
    pub queued: &'static str,
    pub starting: &'static str,
    pub sampling: fn(u32, u32) -> String,
    pub decoding: &'static str,
    pub done: &'static str,
    pub failed: &'static str,
    pub cancelled: &'static str,
    pub seconds: fn(u64, u64) -> String,
    pub minutes_seconds: fn(u64, u64) -> String,
    pub image_missing: &'static str,
    pub image_not_made: &'static str,
    pub job_lost: &'static str,
    // The image card.
    pub open_full_size_title: &'static str,
    pub reuse: &'static str,
    pub size: &'static str,
    pub time: &'static str,
    /// The fact naming the backend (GPU) that made an image.
    pub gpu: &'static str,
    pub open_full_size: &'static str,
    pub download: &'static str,
    pub reuse_settings: &'static str,
    pub delete: &'static str,
    pub confirm_deletion: &'static str,
    pub delete_question: &'static str,
    pub yes_delete: &'static str,
    pub keep: &'static str,
    // The gallery.
    pub history: &'static str,
    pub history_empty: &'static str,
    pub show_image: fn(&str) -> String,
    pub loading: &'static str,
    pub load_more: &'static str,
    // The gallery's search and stars, and the full-screen viewer.
    pub search_label: &'static str,
    pub search_placeholder: &'static str,
    pub starred_filter: &'static str,
    pub nothing_found: &'static str,
    pub star: &'static str,
    pub unstar: &'static str,
    pub viewer: &'static str,
    pub close: &'static str,
    pub previous_image: &'static str,
    pub next_image: &'static str,
    pub copy_prompt: &'static str,
    pub copied: &'static str,
    pub copy_failed: &'static str,
    /// The viewer's button that puts the image's settings in the form.
    pub reuse_image: &'static str,
    /// The fact naming the GPU that made an image, in the viewer.
    pub made_on: &'static str,
    /// "3 of 24": where the viewer stands in the loaded gallery.
    pub position: fn(usize, usize) -> String,
    // The backend light.
    pub backend: &'static str,
    pub checking: &'static str,
    pub checking_detail: &'static str,
    pub offline: &'static str,
    pub offline_detail: &'static str,
    pub missing_nodes: fn(&str) -> String,
    pub missing_models: fn(&str) -> String,
    pub demo: &'static str,
    pub ready: &'static str,
    pub backend_starting: &'static str,
    pub unreachable: &'static str,
    /// A backend of several that runs a job now.
    pub backend_busy: &'static str,
    /// The status light's detail: ready on this device.
    pub ready_on: fn(&str) -> String,
    pub ready_detail: &'static str,
    pub starting_detail: &'static str,
    pub unreachable_detail: &'static str,
    /// Every backend is fine but the studio takes no job (its disk is full).
    pub not_ready: &'static str,
    /// The status light's word with several GPUs: ready ones of all.
    pub gpus_ready: fn(usize, usize) -> String,
    pub demo_banner: &'static str,
    // Calls that failed.
    pub network_error: &'static str,
    pub unexpected_answer: &'static str,
    pub server_trouble: &'static str,
    pub request_refused: &'static str,
    // LoRAs and saved styles (`components::styles`).
    pub loras: &'static str,
    pub add_lora: &'static str,
    pub loras_hint: &'static str,
    /// The strength slider's label: the LoRA's name.
    pub lora_strength: fn(&str) -> String,
    /// The remove button's label: the LoRA's name.
    pub remove_lora: fn(&str) -> String,
    pub trigger_words: &'static str,
    pub styles: &'static str,
    pub no_style: &'static str,
    pub style_name: &'static str,
    pub words_before: &'static str,
    pub words_after: &'static str,
    pub save_style: &'static str,
    pub rename_style: &'static str,
    pub delete_style: &'static str,
}

pub const EN: Ui = Ui {
    loras: "LoRAs",
    add_lora: "Add a LoRA",
    loras_hint: "Up to 4, each with a strength from 0 to 2.",
    lora_strength: |name| format!("Strength of {name}"),
    remove_lora: |name| format!("Remove {name}"),
    trigger_words: "Trigger words (tap to add to the prompt)",
    styles: "Styles",
    no_style: "No style",
    style_name: "Style name",
    words_before: "Words before the prompt",
    words_after: "Words after the prompt",
    save_style: "Save as a new style",
    rename_style: "Rename",
    delete_style: "Delete style",
    name: "English",
    title: "Z-Image-Turbo (Local)",
    description: "A private text-to-image studio on your own GPU.",
    language: "Language",
    pair_phone: "Pair a phone",
    pair_hint: "A QR code that opens the studio on a phone of this network.",
    not_found_title: "Not found · Z-Image-Turbo (Local)",
    not_found_heading: "Page not found",
    not_found_text: "There is nothing at this address.",
    back_to_studio: "Back to the studio",
    form_label: "Generate an image",
    prompt: "Prompt",
    prompt_placeholder: "Describe the image...",
    examples: "Examples",
    example_prompts: [
        (
            "Lighthouse",
            "A lighthouse on a rocky coast at dusk, waves breaking, warm light in the window, oil painting",
        ),
        (
            "Tea house",
            "A quiet tea house in the mountains after rain, mist between pine trees, soft morning light",
        ),
        (
            "Red panda",
            "A red panda reading a book under a paper lantern, watercolor, gentle colors",
        ),
    ],
    aspect_ratio: "Aspect ratio",
    seed: "Seed",
    seed_placeholder: "Random",
    roll_seed: "Roll a random seed",
    random_every_time: "Random seed for every image",
    seed_hint: "Empty: a new random seed for each image.",
    seed_invalid: |max| {
        format!("The seed must be a whole number from 0 to {max}, or empty for a random one.")
    },
    needs_javascript: "The studio needs JavaScript (and WebAssembly) to make images.",
    source_legend: "Start from a picture",
    choose_picture: "Choose a picture",
    picture_hint: "Or paste one, or drop it here: a photo, a sketch, an image you made.",
    uploading_picture: "Sending the picture...",
    chosen_picture: "The picture to start from",
    remove_picture: "Remove the picture",
    picture_shape: "Picture",
    strength: "How much may change",
    strength_a_little: "A little",
    strength_some: "Some",
    strength_a_lot: "A lot",
    strength_most: "Most",
    strength_everything: "Everything",
    strength_value: |words, value| format!("{words} may change ({value})"),
    start_from_this: "Start from this",
    paint_over: "Paint over a part",
    painting_hint: "Paint the part to change with a finger or the mouse; the rest stays as it is.",
    painting_canvas: "The picture: paint over the part to change",
    brush_size: "Brush size",
    brush_small: "Small",
    brush_medium: "Medium",
    brush_large: "Large",
    undo: "Undo",
    clear: "Clear",
    show_painting: "Show the painting",
    done_painting: "Done",
    painted_part_changes: "Only the painted part changes.",
    mask_not_made: "The painting could not be prepared. Try again.",
    started_from: "Started from",
    generate: "Generate",
    sending: "Sending...",
    cancel: "Cancel",
    result: "Result",
    live_preview: "Live preview of the image being made",
    image_appears_here: "Your image appears here.",
    elapsed_time: "Elapsed time",
    progress: "Progress",
    reconnecting: "Connection lost; catching up...",
    cancelling: "Cancelling...",
    queued_next: "Queued: next in line",
    queued_at: |position| format!("Queued: {position} in line"),
    queued: "Queued",
    starting: "Starting...",
    sampling: |step, total| format!("Sampling: step {step} of {total}"),
    decoding: "Decoding",
    done: "Done",
    failed: "Failed",
    cancelled: "Cancelled",
    seconds: |seconds, tenths| format!("{seconds}.{tenths} s"),
    minutes_seconds: |minutes, seconds| format!("{minutes} min {seconds:02} s"),
    image_missing: "The image of this job is no longer available.",
    image_not_made: "The image could not be made.",
    job_lost: "The studio no longer knows this job (it may have restarted). Generate again.",
    open_full_size_title: "Open at full size",
    reuse: "reuse",
    size: "Size",
    time: "Time",
    gpu: "GPU",
    open_full_size: "Open full size",
    download: "Download",
    reuse_settings: "Reuse settings",
    delete: "Delete",
    confirm_deletion: "Confirm deletion",
    delete_question: "Delete this image?",
    yes_delete: "Yes, delete",
    keep: "Keep",
    history: "History",
    history_empty: "No images yet. The ones you make appear here, on every device.",
    show_image: |prompt| format!("Show image: {prompt}"),
    loading: "Loading...",
    load_more: "Load more",
    search_label: "Search the history",
    search_placeholder: "Search prompts or a seed",
    starred_filter: "Starred",
    nothing_found: "No image matches.",
    star: "Star",
    unstar: "Unstar",
    viewer: "Image viewer",
    close: "Close",
    previous_image: "Previous image",
    next_image: "Next image",
    copy_prompt: "Copy prompt",
    copied: "Copied",
    copy_failed: "Could not copy",
    reuse_image: "Reuse",
    made_on: "Made on",
    position: |at, of| format!("{at} of {of}"),
    backend: "Backend: ",
    checking: "Checking",
    checking_detail: "Asking the gateway whether ComfyUI is ready.",
    offline: "Offline",
    offline_detail: "The studio's gateway does not answer. Check the network.",
    missing_nodes: |names| format!("Missing node packs: {names}"),
    missing_models: |names| format!("Missing model files: {names}"),
    demo: "Demo",
    ready: "Ready",
    backend_starting: "Starting",
    unreachable: "Unreachable",
    backend_busy: "Busy",
    ready_on: |device| format!("Ready on {device}."),
    ready_detail: "ComfyUI is ready.",
    starting_detail: "ComfyUI answers, but cannot run the studio's workflow yet.",
    unreachable_detail: "ComfyUI does not answer yet; the studio keeps trying.",
    not_ready: "Not ready",
    gpus_ready: |ready, total| format!("{ready} of {total} GPUs ready"),
    demo_banner: "Demo mode: a built-in simulator makes test patterns instead of real images.",
    network_error: "The studio could not be reached. Check the connection and try again.",
    unexpected_answer: "The studio answered in a way this page does not understand. Reload the page.",
    server_trouble: "The studio is having trouble right now. Try again in a moment.",
    request_refused: "The studio refused the request. Reload the page and try again.",
};

pub const ZH_CN: Ui = Ui {
    loras: "LoRA 模型",
    add_lora: "添加 LoRA",
    loras_hint: "最多 4 个，每个的强度从 0 到 2。",
    lora_strength: |name| format!("{name} 的强度"),
    remove_lora: |name| format!("移除 {name}"),
    trigger_words: "触发词（点一下加入提示词）",
    styles: "风格",
    no_style: "不用风格",
    style_name: "风格名称",
    words_before: "加在提示词前的文字",
    words_after: "加在提示词后的文字",
    save_style: "保存为新风格",
    rename_style: "改名",
    delete_style: "删除风格",
    name: "中文",
    title: "Z-Image-Turbo（本地）",
    description: "在你自己的 GPU 上运行的私人文生图工作室。",
    language: "语言",
    pair_phone: "配对手机",
    pair_hint: "扫描二维码，在同一网络的手机上打开工作室。",
    not_found_title: "页面不存在 · Z-Image-Turbo（本地）",
    not_found_heading: "页面不存在",
    not_found_text: "这个地址没有任何内容。",
    back_to_studio: "返回工作室",
    form_label: "生成图片",
    prompt: "提示词",
    prompt_placeholder: "描述你想要的画面……",
    examples: "示例",
    example_prompts: [
        (
            "灯塔",
            "黄昏时分礁石海岸上的灯塔，浪花拍岸，窗口透出暖光，油画风格",
        ),
        ("茶馆", "雨后山中安静的茶馆，松林间薄雾缭绕，清晨柔和的光线"),
        ("小熊猫", "小熊猫在纸灯笼下看书，水彩画，色彩柔和"),
    ],
    aspect_ratio: "画幅比例",
    seed: "种子",
    seed_placeholder: "随机",
    roll_seed: "随机生成一个种子",
    random_every_time: "每张图片都用随机种子",
    seed_hint: "留空：每张图片使用新的随机种子。",
    seed_invalid: |max| format!("种子必须是 0 到 {max} 之间的整数，或留空以随机生成。"),
    needs_javascript: "工作室需要 JavaScript（和 WebAssembly）才能生成图片。",
    source_legend: "从图片开始",
    choose_picture: "选择图片",
    picture_hint: "也可以粘贴图片，或拖放到这里：照片、草图、生成过的图片都可以。",
    uploading_picture: "正在发送图片……",
    chosen_picture: "起始图片",
    remove_picture: "移除图片",
    picture_shape: "原图",
    strength: "可改变的程度",
    strength_a_little: "一点点",
    strength_some: "一些",
    strength_a_lot: "较多",
    strength_most: "大部分",
    strength_everything: "全部",
    strength_value: |words, value| format!("可改变{words}（{value}）"),
    start_from_this: "以此为起点",
    paint_over: "涂抹局部",
    painting_hint: "用手指或鼠标涂抹要改变的部分，其余部分保持不变。",
    painting_canvas: "图片：涂抹要改变的部分",
    brush_size: "画笔大小",
    brush_small: "小",
    brush_medium: "中",
    brush_large: "大",
    undo: "撤销",
    clear: "清除",
    show_painting: "显示涂抹",
    done_painting: "完成",
    painted_part_changes: "只改变涂抹的部分。",
    mask_not_made: "涂抹的区域未能准备好。请重试。",
    started_from: "起始图片",
    generate: "生成",
    sending: "发送中……",
    cancel: "取消",
    result: "结果",
    live_preview: "正在生成的图片的实时预览",
    image_appears_here: "生成的图片会显示在这里。",
    elapsed_time: "已用时间",
    progress: "进度",
    reconnecting: "连接中断，正在同步……",
    cancelling: "正在取消……",
    queued_next: "排队中：下一个就是你",
    queued_at: |position| format!("排队中：第 {position} 位"),
    queued: "排队中",
    starting: "正在开始……",
    sampling: |step, total| format!("采样中：第 {step} / {total} 步"),
    decoding: "解码中",
    done: "完成",
    failed: "失败",
    cancelled: "已取消",
    seconds: |seconds, tenths| format!("{seconds}.{tenths} 秒"),
    minutes_seconds: |minutes, seconds| format!("{minutes} 分 {seconds:02} 秒"),
    image_missing: "这个任务的图片已不存在。",
    image_not_made: "图片未能生成。",
    job_lost: "工作室已不记得这个任务（可能重启过）。请重新生成。",
    open_full_size_title: "查看原图",
    reuse: "复用",
    size: "尺寸",
    time: "用时",
    gpu: "显卡",
    open_full_size: "打开原图",
    download: "下载",
    reuse_settings: "复用设置",
    delete: "删除",
    confirm_deletion: "确认删除",
    delete_question: "删除这张图片？",
    yes_delete: "确定删除",
    keep: "保留",
    history: "历史记录",
    history_empty: "还没有图片。生成的图片会显示在这里，每台设备都能看到。",
    show_image: |prompt| format!("查看图片：{prompt}"),
    loading: "加载中……",
    load_more: "加载更多",
    search_label: "搜索历史",
    search_placeholder: "搜索提示词或种子",
    starred_filter: "已收藏",
    nothing_found: "没有匹配的图片。",
    star: "收藏",
    unstar: "取消收藏",
    viewer: "图片查看器",
    close: "关闭",
    previous_image: "上一张",
    next_image: "下一张",
    copy_prompt: "复制提示词",
    copied: "已复制",
    copy_failed: "无法复制",
    reuse_image: "复用",
    made_on: "生成于",
    position: |at, of| format!("第 {at} 张，共 {of} 张"),
    backend: "后端：",
    checking: "检查中",
    checking_detail: "正在询问网关 ComfyUI 是否就绪。",
    offline: "离线",
    offline_detail: "工作室的网关没有响应。请检查网络。",
    missing_nodes: |names| format!("缺少节点包：{names}"),
    missing_models: |names| format!("缺少模型文件：{names}"),
    demo: "演示",
    ready: "就绪",
    backend_starting: "启动中",
    unreachable: "无法连接",
    backend_busy: "忙碌",
    ready_on: |device| format!("已就绪，运行在 {device} 上。"),
    ready_detail: "ComfyUI 已就绪。",
    starting_detail: "ComfyUI 已响应，但还不能运行工作室的工作流。",
    unreachable_detail: "ComfyUI 暂时没有响应，工作室会一直重试。",
    not_ready: "未就绪",
    gpus_ready: |ready, total| format!("{total} 块显卡中 {ready} 块就绪"),
    demo_banner: "演示模式：内置模拟器生成测试图案，而不是真实图片。",
    network_error: "无法连接到工作室。请检查网络连接后重试。",
    unexpected_answer: "工作室的响应无法识别。请刷新页面。",
    server_trouble: "工作室暂时出了问题。请稍后再试。",
    request_refused: "工作室拒绝了请求。请刷新页面后重试。",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_heaviest_language_we_speak() {
        assert_eq!(Lang::from_accept_language("zh-CN,zh;q=0.9,en;q=0.8"), Lang::ZhCn);
        assert_eq!(Lang::from_accept_language("en-US,en;q=0.9,zh-CN;q=0.8"), Lang::En);
        assert_eq!(
            Lang::from_accept_language("fr-FR, zh-TW;q=0.7, en;q=0.5"),
            Lang::ZhCn
        );
        assert_eq!(Lang::from_accept_language("en;q=0.2, zh-Hans;q=0.9"), Lang::ZhCn);
        assert_eq!(Lang::from_accept_language("ZH"), Lang::ZhCn);
        assert_eq!(Lang::from_accept_language("fr, de"), Lang::En);
        assert_eq!(Lang::from_accept_language("zh;q=0, en;q=0.1"), Lang::En);
        assert_eq!(Lang::from_accept_language("zh;q=nonsense"), Lang::En);
        assert_eq!(Lang::from_accept_language(""), Lang::En);
        assert_eq!(Lang::from_accept_language("*"), Lang::En);
    }

    #[test]
    fn the_remembered_choice_wins_over_the_browser_and_bad_cookies_are_ignored() {
        assert_eq!(Lang::negotiate(Some("en"), Some("zh-CN")), Lang::En);
        assert_eq!(Lang::negotiate(Some("zh-cn"), Some("en")), Lang::ZhCn);
        assert_eq!(Lang::negotiate(Some("klingon"), Some("zh-CN")), Lang::ZhCn);
        assert_eq!(Lang::negotiate(None, None), Lang::En);
    }

    #[test]
    fn tags_round_trip_and_the_switch_offers_the_other_language() {
        for lang in Lang::ALL {
            assert_eq!(Lang::from_tag(lang.tag()), Some(lang));
            assert_ne!(lang.other(), lang);
            assert_eq!(lang.other().other(), lang);
        }
    }

    fn has_cjk(text: &str) -> bool {
        text.chars()
            .any(|c| matches!(c, '\u{3000}'..='\u{303f}' | '\u{4e00}'..='\u{9fff}' | '\u{ff00}'..='\u{ffef}'))
    }

    /// Every static string of a catalogue, and the functions' output for sample arguments.
    fn all_strings(ui: &Ui) -> Vec<String> {
        let mut strings: Vec<String> = [
            ui.title,
            ui.description,
            ui.language,
            ui.pair_phone,
            ui.pair_hint,
            ui.not_found_title,
            ui.not_found_heading,
            ui.not_found_text,
            ui.back_to_studio,
            ui.form_label,
            ui.prompt,
            ui.prompt_placeholder,
            ui.examples,
            ui.aspect_ratio,
            ui.seed,
            ui.seed_placeholder,
            ui.roll_seed,
            ui.random_every_time,
            ui.seed_hint,
            ui.needs_javascript,
            ui.source_legend,
            ui.choose_picture,
            ui.picture_hint,
            ui.uploading_picture,
            ui.chosen_picture,
            ui.remove_picture,
            ui.picture_shape,
            ui.strength,
            ui.strength_a_little,
            ui.strength_some,
            ui.strength_a_lot,
            ui.strength_most,
            ui.strength_everything,
            ui.start_from_this,
            ui.paint_over,
            ui.painting_hint,
            ui.painting_canvas,
            ui.brush_size,
            ui.brush_small,
            ui.brush_medium,
            ui.brush_large,
            ui.undo,
            ui.clear,
            ui.show_painting,
            ui.done_painting,
            ui.painted_part_changes,
            ui.mask_not_made,
            ui.started_from,
            ui.generate,
            ui.sending,
            ui.cancel,
            ui.result,
            ui.live_preview,
            ui.image_appears_here,
            ui.elapsed_time,
            ui.progress,
            ui.reconnecting,
            ui.cancelling,
            ui.queued_next,
            ui.queued,
            ui.starting,
            ui.decoding,
            ui.done,
            ui.failed,
            ui.cancelled,
            ui.image_missing,
            ui.image_not_made,
            ui.job_lost,
            ui.open_full_size_title,
            ui.reuse,
            ui.size,
            ui.time,
            ui.open_full_size,
            ui.download,
            ui.reuse_settings,
            ui.delete,
            ui.confirm_deletion,
            ui.delete_question,
            ui.yes_delete,
            ui.keep,
            ui.history,
            ui.history_empty,
            ui.loading,
            ui.load_more,
            ui.backend,
            ui.checking,
            ui.checking_detail,
            ui.offline,
            ui.offline_detail,
            ui.demo,
            ui.ready,
            ui.backend_starting,
            ui.unreachable,
            ui.backend_busy,
            ui.ready_detail,
            ui.starting_detail,
            ui.unreachable_detail,
            ui.not_ready,
            ui.demo_banner,
            ui.network_error,
            ui.unexpected_answer,
            ui.server_trouble,
            ui.request_refused,
            ui.loras,
            ui.add_lora,
            ui.loras_hint,
            ui.trigger_words,
            ui.styles,
            ui.no_style,
            ui.style_name,
            ui.words_before,
            ui.words_after,
            ui.save_style,
            ui.rename_style,
            ui.delete_style,
        ]
        .map(str::to_owned)
        .to_vec();
        for (label, prompt) in ui.example_prompts {
            strings.extend([label.to_owned(), prompt.to_owned()]);
        }
        strings.extend([
            (ui.seed_invalid)(9),
            (ui.queued_at)(2),
            (ui.sampling)(3, 8),
            (ui.seconds)(3, 4),
            (ui.minutes_seconds)(1, 5),
            (ui.show_image)("x"),
            (ui.missing_nodes)("x"),
            (ui.missing_models)("x"),
            (ui.position)(3, 24),
            (ui.gpus_ready)(2, 3),
            (ui.ready_on)("x"),
            (ui.strength_value)("x", "0.6"),
            (ui.lora_strength)("x"),
            (ui.remove_lora)("x"),
        ]);
        strings
    }

    #[test]
    fn the_english_catalogue_has_no_chinese_and_the_chinese_one_is_chinese() {
        for text in all_strings(&EN) {
            assert!(!has_cjk(&text), "{text}");
        }
        // Product names (Z-Image-Turbo, ComfyUI, GPU, JavaScript) stay Latin; every sentence is Chinese.
        for text in all_strings(&ZH_CN) {
            assert!(
                has_cjk(&text) || text == "x" || text.starts_with("Z-Image"),
                "{text}"
            );
        }
    }
}
