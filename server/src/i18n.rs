//! The gateway's own words in English and Simplified Chinese: the API's error messages (their `code`
//! and `field` are the same in every language) and the door's sign-in and pairing pages. The page's
//! words are `app::i18n`; [`Lang`] and its negotiation are shared from there.
//!
//! [`Cli`] holds what `zimage models` prints for people, in the terminal's language
//! (`crate::config::terminal_language`).
//!
//! One [`Text`] value per language, so a sentence missing in one of them is a compile error; adding
//! one is a field here and a line in each of [`Text::EN`] and [`Text::ZH_CN`].

pub use app::i18n::Lang;

use crate::validation::Rule;

/// Every sentence the gateway writes for people, in one language.
#[derive(Debug)]
pub struct Text {
    // Rules of a job request (`validation.rs`).
    pub prompt_empty: &'static str,
    pub prompt_too_long: fn(usize, usize) -> String,
    pub prompt_control: &'static str,
    pub seed_range: fn(u64) -> String,
    pub side_range: fn(&str, u32, u32) -> String,
    pub side_step: fn(&str, u32) -> String,
    pub one_image: &'static str,
    pub ratio_or_size: &'static str,
    pub width_needs_height: &'static str,
    pub height_needs_width: &'static str,
    // The OpenAI-compatible images API's rules.
    pub image_count: fn(u32) -> String,
    pub size_or_ratio: &'static str,
    pub seeds_range: fn(u32, u64) -> String,
    pub size_format: fn(u32, u32, u32) -> String,
    /// A source picture where none can be taken (or written down wrongly).
    pub source_not_here: &'static str,
    pub transparent_background: &'static str,
    pub compression_range: &'static str,
    pub partial_images: fn(u32) -> String,
    pub url_is_png: &'static str,
    /// More LoRAs than a job may use (the limit).
    pub too_many_loras: fn(usize) -> String,
    /// A LoRA name that cannot name a file in `models/loras` (the field, e.g. `loras[0].name`).
    pub lora_name: fn(&str) -> String,
    /// A LoRA strength out of range (the field, the lowest, the highest).
    pub lora_strength: fn(&str, f64, f64) -> String,
    /// The same LoRA twice (the field).
    pub lora_twice: fn(&str) -> String,
    /// A LoRA no backend has listed (its name).
    pub lora_unknown: fn(&str) -> String,
    /// A waiting job's LoRA that every backend which had it no longer lists (its name).
    pub lora_gone: fn(&str) -> String,
    /// A wait for images given up: seconds waited without a word from their jobs.
    pub generation_timed_out: fn(u64) -> String,
    // The shape of a request.
    pub body_too_large: fn(usize) -> String,
    pub json_required: &'static str,
    pub malformed_json: fn(&str) -> String,
    pub json_object: &'static str,
    /// Wraps serde's own (English) description of a field of the wrong type, unknown or missing.
    pub invalid_field: fn(&str) -> String,
    pub unreadable_body: fn(&str) -> String,
    pub uri_too_long: fn(usize) -> String,
    pub headers_too_large: fn(usize, usize) -> String,
    // What a request asked about.
    pub no_such_job: &'static str,
    pub no_such_image: &'static str,
    pub no_such_job_or_image: &'static str,
    pub no_preview: &'static str,
    pub no_endpoint: &'static str,
    pub job_ended: &'static str,
    pub already_saving: &'static str,
    pub history_limit: fn(usize) -> String,
    pub history_before: &'static str,
    pub starred_bool: &'static str,
    pub search_too_long: fn(usize) -> String,
    pub search_too_many_words: fn(usize) -> String,
    pub last_event_id: &'static str,
    // The studio's state.
    /// Wraps readiness's explanation (it names ComfyUI's address and the technical reason).
    pub not_ready: fn(&str) -> String,
    pub restarting: &'static str,
    pub disk_full: &'static str,
    /// `/readyz`'s warnings: the disk is getting full (MiB free), is full (MiB free), ComfyUI has no GPU.
    pub disk_low_warning: fn(u64) -> String,
    pub disk_full_warning: fn(u64) -> String,
    pub cpu_warning: &'static str,
    pub storage_unavailable: &'static str,
    pub internal: &'static str,
    pub queue_full: fn(usize) -> String,
    /// One client holds its whole share of the line.
    pub share_full: fn(usize) -> String,
    pub too_fast: &'static str,
    /// More images in one request than one device may start at once.
    pub too_many_at_once: fn(u32) -> String,
    pub not_yours: &'static str,
    /// A job of the OpenAI-compatible API ended without its image: its code and ComfyUI's reason.
    pub generation_failed: fn(&str, &str) -> String,
    pub generation_cancelled: &'static str,
    // The door.
    pub not_served: &'static str,
    pub no_address: &'static str,
    pub address_not_allowed: &'static str,
    pub unknown_host: &'static str,
    pub cross_origin: &'static str,
    pub too_many_streams: &'static str,
    pub sign_in_first: &'static str,
    pub wrong_token: &'static str,
    pub too_many_attempts: &'static str,
    pub no_secret: &'static str,
    pub wrong_secret: &'static str,
    // The door's rules for what a request carries: its query and the arrival of its body.
    pub query_control: fn(&str) -> String,
    pub body_timeout: fn(u64) -> String,
    // The door's pages (HTML fragments: no user text goes into them unescaped).
    pub studio: &'static str,
    pub sign_in_title: &'static str,
    pub sign_in_intro: &'static str,
    pub secret_placeholder: &'static str,
    pub sign_in: &'static str,
    pub sign_in_needs_javascript: &'static str,
    pub pair_instead: &'static str,
    pub no_answer: &'static str,
    pub pair_title: &'static str,
    pub pair_heading: &'static str,
    pub pair_with_secret: fn(u64) -> String,
    pub pair_without_secret: &'static str,
    pub pair_on_localhost: &'static str,
    pub back_to_studio: &'static str,
    pub stale_title: &'static str,
    pub stale_heading: &'static str,
    pub stale_text: &'static str,
    /// Taking pictures and masks, and a job's source (`pictures`).
    pub pictures: &'static Pictures,
    /// The pictures and form of `POST /v1/images/edits` (`openai/edit.rs`).
    pub edits: &'static Edits,
    /// Saved styles (`styles`).
    pub styles: &'static Styles,
}

impl Text {
    pub const EN: Text = Text {
        prompt_empty: "Describe the image: the prompt is empty.",
        prompt_too_long: |length, limit| {
            format!("The prompt is {length} characters long; the limit is {limit}.")
        },
        prompt_control: "The prompt contains control characters.",
        seed_range: |max| format!("The seed must be between 0 and {max}."),
        side_range: |field, min, max| format!("The {field} must be between {min} and {max} pixels."),
        side_step: |field, step| format!("The {field} must be a multiple of {step} pixels."),
        one_image: "The studio makes one image at a time: batch_size must be 1.",
        ratio_or_size: "Give either an aspect ratio or a width and height, not both.",
        width_needs_height: "A width needs a height.",
        height_needs_width: "A height needs a width.",
        image_count: |most| format!("n must be between 1 and {most}."),
        size_or_ratio: "Give either a size or an aspect ratio, not both.",
        seeds_range: |count, most| format!("The seeds of the {count} images must stay between 0 and {most}."),
        size_format: |least, most, step| {
            format!(
                "The size must be \"auto\" or WIDTHxHEIGHT, e.g. \"1024x576\" (sides of {least} to {most} pixels in steps of {step})."
            )
        },
        source_not_here: "A picture to start from cannot be given here.",
        transparent_background: "The model makes opaque images: a transparent background cannot be made. Use \"auto\" or \"opaque\".",
        compression_range: "output_compression must be between 0 and 100.",
        partial_images: |most| format!("partial_images must be between 0 and {most}."),
        url_is_png: "A url answer links to the stored PNG: ask for output_format \"png\", or for response_format \"b64_json\" to get JPEG or WebP.",
        too_many_loras: |max| format!("A job may use at most {max} LoRAs."),
        lora_name: |field| {
            format!(
                "{field} must be a LoRA file's name as the studio lists it: 1 to 255 characters, without control characters, \"..\" or a leading slash."
            )
        },
        lora_strength: |field, min, max| format!("{field} must be a number from {min} to {max}."),
        lora_twice: |field| format!("{field} names a LoRA the job already uses."),
        lora_unknown: |name| {
            format!(
                "No GPU has the LoRA \"{name}\". Put the file in models/loras, or pick one the studio lists."
            )
        },
        lora_gone: |name| format!("No GPU has the LoRA \"{name}\" any more, so the image cannot be made."),
        generation_timed_out: |seconds| {
            format!(
                "No word of the images for {seconds} seconds, longer than a job may take: the wait was given up and the jobs cancelled."
            )
        },
        body_too_large: |max| format!("The request body is larger than {max} bytes."),
        json_required: "Send the request as JSON (Content-Type: application/json).",
        malformed_json: |detail| format!("The request body is not valid JSON: {detail}."),
        json_object: "The request body must be a JSON object.",
        invalid_field: str::to_owned,
        unreadable_body: str::to_owned,
        uri_too_long: |max| format!("The address is longer than {max} bytes."),
        headers_too_large: |bytes, fields| {
            format!("The request headers are larger than {bytes} bytes or more than {fields} fields.")
        },
        no_such_job: "There is no such job.",
        no_such_image: "There is no such image.",
        no_such_job_or_image: "There is no such job or image.",
        no_preview: "This job has no preview.",
        no_endpoint: "There is no such API endpoint.",
        job_ended: "The job has already ended.",
        already_saving: "The image is already finished and being saved; delete it from the gallery instead.",
        history_limit: |max| format!("The limit must be a number from 1 to {max}."),
        history_before: "`before` must be an image id from an earlier page.",
        starred_bool: "`starred` must be true or false.",
        search_too_long: |most| format!("The search is longer than {most} characters."),
        search_too_many_words: |most| format!("The search has more than {most} words."),
        last_event_id: "Last-Event-ID must be the id of an event this stream sent.",
        not_ready: str::to_owned,
        restarting: "The studio is restarting; try again in a few seconds.",
        disk_full: "The disk holding the studio's images is full; delete some images or free space, then try again.",
        disk_low_warning: |free| {
            format!(
                "Only {free} MiB are free on the disk holding the studio's images; make room (delete old images \
                 or other files) before saving fails."
            )
        },
        disk_full_warning: |free| {
            format!(
                "The disk holding the studio's images is full ({free} MiB free): no new images until some room \
                 is made (delete old images or other files)."
            )
        },
        cpu_warning: "ComfyUI runs on the CPU: each image will take minutes. Check that its container sees the \
                      GPU (nvidia-smi inside it) and that the NVIDIA Container Toolkit is installed.",
        storage_unavailable: "The studio cannot write to its data folder; the log has the details.",
        internal: "Something went wrong inside the studio; the log has the details.",
        queue_full: |unfinished| {
            format!(
                "The studio already has {unfinished} jobs waiting or running; try again when some have finished."
            )
        },
        share_full: |share| {
            format!(
                "You already have {share} jobs waiting or running, the most one person may hold so that \
                 others can use the studio too; try again when some have finished."
            )
        },
        too_fast: "This device is starting jobs faster than the studio allows; wait a moment.",
        too_many_at_once: |count| {
            format!(
                "This studio starts fewer than {count} jobs at once for one device; ask for fewer images."
            )
        },
        not_yours: "Only the browser that started this job can change it (or someone signed in with the studio's secret).",
        generation_failed: |code, message| format!("The image could not be made ({code}): {message}"),
        generation_cancelled: "The job was cancelled from the studio before its image was done.",
        not_served: "This address is not served.",
        no_address: "The studio cannot tell who is asking.",
        address_not_allowed: "This studio does not accept requests from your network address.",
        unknown_host: "This studio does not answer to that name. If it is yours, add it to ZIMAGE_ALLOWED_HOSTS.",
        cross_origin: "The studio accepts changes only from its own pages.",
        too_many_streams: "This device already follows the most jobs the studio allows at once; close a tab and try again.",
        sign_in_first: "Sign in first: this studio is protected by an access secret.",
        wrong_token: "The bearer token is not this studio's access secret.",
        too_many_attempts: "Too many wrong attempts; wait a little before trying again.",
        no_secret: "This studio has no access secret; there is nothing to sign in to.",
        wrong_secret: "That is not the studio's access secret.",
        query_control: |parameter| format!("The query parameter {parameter:?} contains control characters."),
        body_timeout: |seconds| {
            format!("The request's body did not arrive within {seconds} seconds; send it again.")
        },
        studio: "Z-Image studio",
        sign_in_title: "Sign in · Z-Image studio",
        sign_in_intro: "This studio is private. Enter its access secret to continue.",
        secret_placeholder: "Access secret",
        sign_in: "Sign in",
        sign_in_needs_javascript: "Signing in needs JavaScript.",
        pair_instead: "On a phone, you can instead scan the pairing code shown by a signed-in device (Pair a phone).",
        no_answer: "The studio did not answer; try again.",
        pair_title: "Pair a phone · Z-Image studio",
        pair_heading: "Pair a phone",
        pair_with_secret: |minutes| {
            format!(
                "Scan this code with the phone's camera. The link signs the phone in once, and only within \
                 {minutes} minutes; reload this page for a new one."
            )
        },
        pair_without_secret: "Scan this code with the phone's camera to open the studio.",
        pair_on_localhost: "This page was opened as <b>localhost</b>, which a phone cannot reach: open it from the \
                            studio's network address (for example http://192.168.1.20:7860/pair) instead.",
        back_to_studio: "Back to the studio",
        stale_title: "Pairing link expired · Z-Image studio",
        stale_heading: "This pairing link no longer works",
        stale_text: "Each link signs in one device once, within ten minutes. Open <b>Pair a phone</b> on a \
                     signed-in device for a new code, or sign in with the access secret.",
        pictures: &Pictures::EN,
        edits: &Edits::EN,
        styles: &Styles::EN,
    };

    pub const ZH_CN: Text = Text {
        prompt_empty: "请描述画面：提示词为空。",
        prompt_too_long: |length, limit| format!("提示词有 {length} 个字符，上限是 {limit} 个。"),
        prompt_control: "提示词包含控制字符。",
        seed_range: |max| format!("种子必须在 0 到 {max} 之间。"),
        side_range: |field, min, max| format!("{}必须在 {min} 到 {max} 像素之间。", side_name(field)),
        side_step: |field, step| format!("{}必须是 {step} 像素的整数倍。", side_name(field)),
        one_image: "工作室一次只生成一张图片：batch_size 必须为 1。",
        ratio_or_size: "请只给出画幅比例，或只给出宽度和高度，不要同时给出。",
        width_needs_height: "给出宽度时也需要高度。",
        height_needs_width: "给出高度时也需要宽度。",
        image_count: |most| format!("n 必须在 1 到 {most} 之间。"),
        size_or_ratio: "尺寸和宽高比只能给一个。",
        seeds_range: |count, most| format!("{count} 张图像的种子必须都在 0 到 {most} 之间。"),
        size_format: |least, most, step| {
            format!(
                "尺寸必须是 \"auto\" 或 宽x高，例如 \"1024x576\"（每边 {least} 到 {most} 像素，以 {step} 为步长）。"
            )
        },
        source_not_here: "这里不能给出起始图片。",
        transparent_background: "模型只生成不透明的图像，无法生成透明背景。请使用 \"auto\" 或 \"opaque\"。",
        compression_range: "output_compression 必须在 0 到 100 之间。",
        partial_images: |most| format!("partial_images 必须在 0 到 {most} 之间。"),
        url_is_png: "url 答复链接的是保存的 PNG：请使用 output_format \"png\"，或用 response_format \"b64_json\" 获取 JPEG 或 WebP。",
        too_many_loras: |max| format!("一个任务最多使用 {max} 个 LoRA。"),
        lora_name: |field| {
            format!(
                "{field} 必须是工作室列出的 LoRA 文件名：1 到 255 个字符，不含控制字符、\"..\" 或开头的斜杠。"
            )
        },
        lora_strength: |field, min, max| format!("{field} 必须是 {min} 到 {max} 之间的数字。"),
        lora_twice: |field| format!("{field} 指定的 LoRA 已在此任务中使用。"),
        lora_unknown: |name| {
            format!("没有 GPU 拥有 LoRA \"{name}\"。请把文件放进 models/loras，或选择工作室列出的 LoRA。")
        },
        lora_gone: |name| format!("已没有 GPU 拥有 LoRA \"{name}\"，无法生成图像。"),
        generation_timed_out: |seconds| {
            format!("{seconds} 秒内没有任何图像的消息，超过了任务允许的时长：已停止等待并取消任务。")
        },
        body_too_large: |max| format!("请求体超过了 {max} 字节。"),
        json_required: "请以 JSON 发送请求（Content-Type: application/json）。",
        malformed_json: |detail| format!("请求体不是有效的 JSON：{detail}。"),
        json_object: "请求体必须是一个 JSON 对象。",
        invalid_field: |detail| format!("字段有误：{detail}"),
        unreadable_body: |detail| format!("无法读取请求体：{detail}"),
        uri_too_long: |max| format!("地址超过了 {max} 字节。"),
        headers_too_large: |bytes, fields| format!("请求头超过了 {bytes} 字节或多于 {fields} 个字段。"),
        no_such_job: "没有这个任务。",
        no_such_image: "没有这张图片。",
        no_such_job_or_image: "没有这个任务或图片。",
        no_preview: "这个任务没有预览。",
        no_endpoint: "没有这个 API 接口。",
        job_ended: "这个任务已经结束。",
        already_saving: "图片已经生成完毕，正在保存；请改为在图库中删除它。",
        history_limit: |max| format!("limit 必须是 1 到 {max} 之间的数字。"),
        history_before: "`before` 必须是上一页中某张图片的 id。",
        starred_bool: "`starred` 必须是 true 或 false。",
        search_too_long: |most| format!("搜索内容超过 {most} 个字符。"),
        search_too_many_words: |most| format!("搜索内容超过 {most} 个词。"),
        last_event_id: "Last-Event-ID 必须是这个事件流发送过的事件 id。",
        not_ready: |detail| format!("工作室暂时不能生成图片（ComfyUI 未就绪）：{detail}"),
        restarting: "工作室正在重启，请几秒后再试。",
        disk_full: "存放图片的磁盘已满；请删除一些图片或释放空间后再试。",
        disk_low_warning: |free| {
            format!("存放图片的磁盘只剩 {free} MiB；请在保存失败之前腾出空间（删除旧图片或其他文件）。")
        },
        disk_full_warning: |free| {
            format!(
                "存放图片的磁盘已满（剩余 {free} MiB）：腾出空间之前无法生成新图片（删除旧图片或其他文件）。"
            )
        },
        cpu_warning: "ComfyUI 正在用 CPU 运行：每张图片要几分钟。请检查它的容器能否看到显卡（在容器里运行 \
                      nvidia-smi），以及是否装好了 NVIDIA Container Toolkit。",
        storage_unavailable: "工作室无法写入数据文件夹；详情见日志。",
        internal: "工作室内部出错了；详情见日志。",
        queue_full: |unfinished| format!("工作室已有 {unfinished} 个任务在排队或运行；请等一些完成后再试。"),
        share_full: |share| {
            format!(
                "你已有 {share} 个任务在排队或运行，这是每位用户可占的上限，以便其他人也能使用；请等一些完成后再试。"
            )
        },
        too_fast: "这台设备提交任务的速度超过了工作室的限制；请稍等片刻。",
        too_many_at_once: |count| {
            format!("本工作室一次为一台设备启动的任务少于 {count} 个；请少要几张图像。")
        },
        not_yours: "只有发起这个任务的浏览器（或用工作室密钥登录的人）才能更改它。",
        generation_failed: |code, message| format!("图像未能生成（{code}）：{message}"),
        generation_cancelled: "图像完成之前，任务已在工作室中被取消。",
        not_served: "这个地址不提供服务。",
        no_address: "工作室无法识别请求来源。",
        address_not_allowed: "这个工作室不接受来自你的网络地址的请求。",
        unknown_host: "这个工作室不响应这个名称。如果这是你的工作室，请把它加入 ZIMAGE_ALLOWED_HOSTS。",
        cross_origin: "工作室只接受来自它自己页面的更改。",
        too_many_streams: "这台设备同时关注的任务已达上限；请关闭一个标签页后再试。",
        sign_in_first: "请先登录：这个工作室受访问密钥保护。",
        wrong_token: "这个 Bearer 令牌不是工作室的访问密钥。",
        too_many_attempts: "错误尝试次数过多；请稍等再试。",
        no_secret: "这个工作室没有设置访问密钥，无需登录。",
        wrong_secret: "访问密钥不正确。",
        query_control: |parameter| format!("查询参数 {parameter:?} 含有控制字符。"),
        body_timeout: |seconds| format!("请求体没有在 {seconds} 秒内送达，请重新发送。"),
        studio: "Z-Image 工作室",
        sign_in_title: "登录 · Z-Image 工作室",
        sign_in_intro: "这是一个私人工作室。请输入访问密钥继续。",
        secret_placeholder: "访问密钥",
        sign_in: "登录",
        sign_in_needs_javascript: "登录需要 JavaScript。",
        pair_instead: "在手机上，也可以扫描已登录设备显示的配对二维码（配对手机）。",
        no_answer: "工作室没有响应，请重试。",
        pair_title: "配对手机 · Z-Image 工作室",
        pair_heading: "配对手机",
        pair_with_secret: |minutes| {
            format!(
                "用手机相机扫描这个二维码。链接只能让手机登录一次，且只在 {minutes} 分钟内有效；刷新本页可获得新的链接。"
            )
        },
        pair_without_secret: "用手机相机扫描这个二维码即可打开工作室。",
        pair_on_localhost: "本页是通过 <b>localhost</b> 打开的，手机无法访问：请改用工作室的网络地址打开（例如 \
                            http://192.168.1.20:7860/pair）。",
        back_to_studio: "返回工作室",
        stale_title: "配对链接已过期 · Z-Image 工作室",
        stale_heading: "这个配对链接已失效",
        stale_text: "每个链接只能在十分钟内让一台设备登录一次。请在已登录的设备上打开<b>配对手机</b>获取新的二维码，或用访问密钥登录。",
        pictures: &Pictures::ZH_CN,
        edits: &Edits::ZH_CN,
        styles: &Styles::ZH_CN,
    };

    /// The words of `lang`.
    pub const fn of(lang: Lang) -> &'static Text {
        match lang {
            Lang::En => &Text::EN,
            Lang::ZhCn => &Text::ZH_CN,
        }
    }

    /// The sentence for a broken request rule; `field` is the JSON name the rule is about.
    pub fn rule(&self, rule: Rule, field: &str) -> String {
        use zimage_contract::{MAX_PROMPT_CHARS, MAX_SEED, MAX_SIDE, MIN_SIDE, SIDE_STEP};
        match rule {
            Rule::PromptEmpty => self.prompt_empty.to_owned(),
            Rule::PromptTooLong { length } => (self.prompt_too_long)(length, MAX_PROMPT_CHARS),
            Rule::PromptControlCharacters => self.prompt_control.to_owned(),
            Rule::SeedOutOfRange => (self.seed_range)(MAX_SEED),
            Rule::SideOutOfRange => (self.side_range)(field, MIN_SIDE, MAX_SIDE),
            Rule::SideNotAStep => (self.side_step)(field, SIDE_STEP),
            Rule::OneImageAtATime => self.one_image.to_owned(),
            Rule::RatioOrSize => self.ratio_or_size.to_owned(),
            Rule::WidthNeedsHeight => self.width_needs_height.to_owned(),
            Rule::HeightNeedsWidth => self.height_needs_width.to_owned(),
            Rule::ImageCount => (self.image_count)(zimage_contract::openai::MAX_IMAGES),
            Rule::SizeOrRatio => self.size_or_ratio.to_owned(),
            Rule::SeedsOutOfRange { count } => (self.seeds_range)(count, MAX_SEED),
            Rule::SizeFormat => (self.size_format)(MIN_SIDE, MAX_SIDE, SIDE_STEP),
            Rule::StoredSource => self.source_not_here.to_owned(),
            Rule::TransparentBackground => self.transparent_background.to_owned(),
            Rule::CompressionRange => self.compression_range.to_owned(),
            Rule::PartialImages => (self.partial_images)(zimage_contract::openai::MAX_PARTIAL_IMAGES),
            Rule::UrlIsPng => self.url_is_png.to_owned(),
            Rule::TooManyLoras => (self.too_many_loras)(zimage_contract::styles::MAX_LORAS),
            Rule::LoraName => (self.lora_name)(field),
            Rule::LoraStrength => (self.lora_strength)(
                field,
                zimage_contract::styles::MIN_LORA_STRENGTH,
                zimage_contract::styles::MAX_LORA_STRENGTH,
            ),
            Rule::LoraTwice => (self.lora_twice)(field),
        }
    }
}

/// The sentences about pictures a job starts from, masks, and a job's `source`.
#[derive(Debug)]
pub struct Pictures {
    pub not_a_picture: &'static str,
    /// A format people have but the studio does not take (GIF, HEIC...).
    pub unsupported_format: fn(&str) -> String,
    pub wrong_content_type: &'static str,
    pub animated: &'static str,
    pub unreadable: &'static str,
    /// Most pixels a side, most megapixels.
    pub too_large: fn(u32, u64) -> String,
    /// Width, height, least side.
    pub too_small: fn(u32, u32, u32) -> String,
    /// Most mebibytes.
    pub file_too_large: fn(usize) -> String,
    pub mask_without_alpha: &'static str,
    pub mask_without_transparency: &'static str,
    /// Width, height, most side.
    pub mask_too_large: fn(u32, u32, u32) -> String,
    pub unknown: &'static str,
    pub is_a_mask: &'static str,
    pub is_a_picture: &'static str,
    /// The mask's width and height, the picture's.
    pub mask_size: fn(u32, u32, u32, u32) -> String,
    /// Least and most strength.
    pub strength_range: fn(f32, f32) -> String,
    pub kind_values: &'static str,
}

impl Pictures {
    pub const EN: Pictures = Pictures {
        not_a_picture: "The file is not a picture: send a PNG, JPEG or WebP.",
        unsupported_format: |format| format!("{format} files are not taken: send a PNG, JPEG or WebP."),
        wrong_content_type: "Send the file's bytes as the body, with Content-Type image/png, image/jpeg, image/webp or application/octet-stream.",
        animated: "Animated pictures are not taken: send a still PNG, JPEG or WebP.",
        unreadable: "The picture cannot be read: the file is damaged or cut off.",
        too_large: |side, megapixels| {
            format!("The picture is too large: at most {side} pixels a side and {megapixels} megapixels.")
        },
        too_small: |width, height, least| {
            format!("The picture ({width} x {height}) is too small: each side needs at least {least} pixels.")
        },
        file_too_large: |mebibytes| format!("The file is larger than {mebibytes} MiB."),
        mask_without_alpha: "The mask needs transparency: a PNG or WebP whose transparent pixels mark what to repaint.",
        mask_without_transparency: "The mask has no transparent pixel: nothing would be repainted.",
        mask_too_large: |width, height, most| {
            format!("The mask ({width} x {height}) is larger than any picture: at most {most} pixels a side.")
        },
        unknown: "There is no such picture: upload it first.",
        is_a_mask: "This id is a mask: give it as the mask, and a picture as the picture.",
        is_a_picture: "This id is a picture, not a mask: upload the mask with ?kind=mask.",
        mask_size: |mask_width, mask_height, width, height| {
            format!(
                "The mask is {mask_width} x {mask_height} pixels but the picture is {width} x {height}: they must be the same size."
            )
        },
        strength_range: |least, most| format!("The strength must be a number from {least} to {most}."),
        kind_values: "kind must be picture or mask.",
    };

    pub const ZH_CN: Pictures = Pictures {
        not_a_picture: "这个文件不是图片：请发送 PNG、JPEG 或 WebP。",
        unsupported_format: |format| format!("不接受 {format} 文件：请发送 PNG、JPEG 或 WebP。"),
        wrong_content_type: "请把文件内容直接作为请求体发送，Content-Type 为 image/png、image/jpeg、image/webp 或 application/octet-stream。",
        animated: "不接受动图：请发送静态的 PNG、JPEG 或 WebP。",
        unreadable: "无法读取这张图片：文件已损坏或不完整。",
        too_large: |side, megapixels| {
            format!("图片太大：每边最多 {side} 像素，总共最多 {megapixels} 百万像素。")
        },
        too_small: |width, height, least| {
            format!("图片（{width} x {height}）太小：每边至少需要 {least} 像素。")
        },
        file_too_large: |mebibytes| format!("文件超过了 {mebibytes} MiB。"),
        mask_without_alpha: "蒙版需要透明度：请使用 PNG 或 WebP，用透明像素标出要重画的部分。",
        mask_without_transparency: "蒙版没有透明像素：没有要重画的部分。",
        mask_too_large: |width, height, most| {
            format!("蒙版（{width} x {height}）比任何图片都大：每边最多 {most} 像素。")
        },
        unknown: "没有这张图片：请先上传。",
        is_a_mask: "这个 id 是蒙版：请把它作为蒙版，并给出一张图片作为原图。",
        is_a_picture: "这个 id 是图片，不是蒙版：请用 ?kind=mask 上传蒙版。",
        mask_size: |mask_width, mask_height, width, height| {
            format!("蒙版是 {mask_width} x {mask_height} 像素，而图片是 {width} x {height}：两者必须一样大。")
        },
        strength_range: |least, most| format!("强度必须是 {least} 到 {most} 之间的数。"),
        kind_values: "kind 必须是 picture 或 mask。",
    };
}

/// The refusals of `POST /v1/images/edits` before its pictures are looked at.
#[derive(Debug)]
pub struct Edits {
    /// The parameter that should hold the picture.
    pub no_image: fn(&str) -> String,
    pub several_images: &'static str,
    pub several_masks: &'static str,
    pub remote_url: &'static str,
    pub file_id: &'static str,
    pub not_a_data_url: &'static str,
    /// Most parts.
    pub too_many_parts: fn(usize) -> String,
    /// Most bytes.
    pub text_too_long: fn(usize) -> String,
    pub not_text: &'static str,
    pub duplicate: &'static str,
    /// Most mebibytes.
    pub body_too_large: fn(usize) -> String,
    /// What the form parser said.
    pub unreadable_form: fn(&str) -> String,
    pub form_or_json: &'static str,
}

impl Edits {
    pub const EN: Edits = Edits {
        no_image: |param| format!("Send the picture to change as `{param}`."),
        several_images: "The studio changes one picture at a time: send one image, not several.",
        several_masks: "Send one mask.",
        remote_url: "The studio fetches no pictures from other addresses: send the picture itself, as a data: URL (data:image/png;base64,...).",
        file_id: "The studio keeps no OpenAI files: send the picture itself, as a data: URL (data:image/png;base64,...).",
        not_a_data_url: "Not a base64 data: URL of a picture (data:image/png;base64,...).",
        too_many_parts: |most| format!("The form has too many parts: at most {most}."),
        text_too_long: |most| format!("This field is too long: at most {most} bytes."),
        not_text: "This field must be text: only image, image[] and mask are files.",
        duplicate: "This field is sent twice.",
        body_too_large: |mebibytes| format!("The request body is larger than {mebibytes} MiB."),
        unreadable_form: |detail| format!("The form cannot be read: {detail}"),
        form_or_json: "Send the edit as multipart/form-data (as OpenAI's SDKs do) or as JSON.",
    };

    pub const ZH_CN: Edits = Edits {
        no_image: |param| format!("请用 `{param}` 发送要修改的图片。"),
        several_images: "工作室一次只修改一张图片：请只发送一张，而不是多张。",
        several_masks: "请只发送一个蒙版。",
        remote_url: "工作室不从其他地址获取图片：请直接发送图片本身，使用 data: URL（data:image/png;base64,...）。",
        file_id: "工作室不保存 OpenAI 文件：请直接发送图片本身，使用 data: URL（data:image/png;base64,...）。",
        not_a_data_url: "这不是图片的 base64 data: URL（data:image/png;base64,...）。",
        too_many_parts: |most| format!("表单的部分太多：最多 {most} 个。"),
        text_too_long: |most| format!("这个字段太长：最多 {most} 字节。"),
        not_text: "这个字段必须是文本：只有 image、image[] 和 mask 是文件。",
        duplicate: "这个字段发送了两次。",
        body_too_large: |mebibytes| format!("请求体超过了 {mebibytes} MiB。"),
        unreadable_form: |detail| format!("无法读取表单：{detail}"),
        form_or_json: "请以 multipart/form-data（OpenAI 的 SDK 就是这样发送的）或 JSON 发送修改请求。",
    };
}

/// The sentences about saved styles.
#[derive(Debug)]
pub struct Styles {
    pub name_empty: &'static str,
    /// The name's length, the limit.
    pub name_too_long: fn(usize, usize) -> String,
    pub control: &'static str,
    /// The words' length, the limit.
    pub text_too_long: fn(usize, usize) -> String,
    /// Most LoRAs.
    pub too_many_loras: fn(usize) -> String,
    pub lora_name: &'static str,
    pub lora_twice: &'static str,
    /// Least and most strength.
    pub lora_strength: fn(f64, f64) -> String,
    pub name_taken: &'static str,
    /// Most styles.
    pub too_many: fn(usize) -> String,
    pub not_found: &'static str,
    /// The name a job asked for.
    pub unknown: fn(&str) -> String,
}

impl Styles {
    pub const EN: Styles = Styles {
        name_empty: "Give the style a name.",
        name_too_long: |length, limit| format!("The name is {length} characters long; the limit is {limit}."),
        control: "The text contains control characters.",
        text_too_long: |length, limit| {
            format!("These words are {length} characters long; the limit is {limit}.")
        },
        too_many_loras: |most| format!("A style uses at most {most} LoRAs."),
        lora_name: "A LoRA needs the name of its file, without control characters.",
        lora_twice: "This LoRA is in the style twice.",
        lora_strength: |least, most| format!("A LoRA's strength must be a number from {least} to {most}."),
        name_taken: "Another style already has this name.",
        too_many: |most| format!("The studio keeps at most {most} styles: delete one first."),
        not_found: "There is no such style.",
        unknown: |name| format!("There is no style called \u{201c}{name}\u{201d}."),
    };

    pub const ZH_CN: Styles = Styles {
        name_empty: "请给风格起个名字。",
        name_too_long: |length, limit| format!("名字有 {length} 个字符，上限是 {limit} 个。"),
        control: "文字包含控制字符。",
        text_too_long: |length, limit| format!("这段文字有 {length} 个字符，上限是 {limit} 个。"),
        too_many_loras: |most| format!("一个风格最多使用 {most} 个 LoRA。"),
        lora_name: "LoRA 需要它的文件名，且不能包含控制字符。",
        lora_twice: "这个 LoRA 在风格里出现了两次。",
        lora_strength: |least, most| format!("LoRA 的强度必须是 {least} 到 {most} 之间的数。"),
        name_taken: "已经有另一个风格叫这个名字。",
        too_many: |most| format!("工作室最多保存 {most} 个风格：请先删除一个。"),
        not_found: "没有这个风格。",
        unknown: |name| format!("没有名为“{name}”的风格。"),
    };

    /// The sentence for a broken style rule.
    pub fn rule(&self, rule: crate::styles::StyleRule) -> String {
        use crate::styles::StyleRule;
        use zimage_contract::styles::{
            MAX_LORA_STRENGTH, MAX_LORAS, MAX_STYLE_NAME_CHARS, MAX_STYLE_TEXT_CHARS, MIN_LORA_STRENGTH,
        };
        match rule {
            StyleRule::NameEmpty => self.name_empty.to_owned(),
            StyleRule::NameTooLong { length } => (self.name_too_long)(length, MAX_STYLE_NAME_CHARS),
            StyleRule::ControlCharacters => self.control.to_owned(),
            StyleRule::TextTooLong { length } => (self.text_too_long)(length, MAX_STYLE_TEXT_CHARS),
            StyleRule::TooManyLoras => (self.too_many_loras)(MAX_LORAS),
            StyleRule::LoraName => self.lora_name.to_owned(),
            StyleRule::LoraTwice => self.lora_twice.to_owned(),
            StyleRule::LoraStrength => (self.lora_strength)(MIN_LORA_STRENGTH, MAX_LORA_STRENGTH),
        }
    }
}

/// What the command line prints for people, in one language (file names, hashes, sizes and commands
/// stay as they are).
#[derive(Debug)]
pub struct Cli {
    pub already_in_place: &'static str,
    pub checked_in_place: &'static str,
    pub downloaded: fn(&str) -> String,
    pub fetched: fn(&str, &str, &str, &str) -> String,
    pub all_in_place: fn(usize, &str) -> String,
    pub verified_ok: fn(&str, &str) -> String,
    pub unreferenced: fn(&str) -> String,
    pub missing_file: &'static str,
    pub wrong_size: fn(u64, u64) -> String,
    pub wrong_hash: fn(&str, &str, &str) -> String,
    pub failed_verification: fn(usize, usize, &str) -> String,
    pub all_verified: fn(usize, &str) -> String,
    pub model_set: fn(&str, &str) -> String,
    pub other_sets: fn(&str) -> String,
    pub models_folder: fn(&str) -> String,
    pub size_unknown: &'static str,
    pub present_checked: &'static str,
    pub present_unchecked: &'static str,
    pub partly_downloaded: fn(&str) -> String,
    pub missing: &'static str,
    pub pinned: &'static str,
    pub follows_branch: &'static str,
    pub follows_branch_at: fn(&str) -> String,
    pub from: &'static str,
    pub gateway_settings: fn(&str) -> String,
    pub loras_in_place: fn(usize) -> String,
    pub loras_verified: fn(usize) -> String,
    pub loras_failed: fn(usize, usize) -> String,
    pub loras_heading: &'static str,
    pub lora_role: &'static str,
    pub not_in_manifest: &'static str,
    pub lora_added: fn(&str, &str, &str) -> String,
    pub lora_fetch_hint: &'static str,
}

impl Cli {
    pub const EN: Cli = Cli {
        already_in_place: "already in place",
        checked_in_place: "found in place and checked",
        downloaded: |size| format!("downloaded ({size})"),
        fetched: |path, what, sha256, source| format!("{path}: {what}; sha256 {sha256} ({source})"),
        all_in_place: |count, set| format!("All {count} files of set `{set}` are in place."),
        verified_ok: |sha256, reference| format!("ok, sha256 {sha256} ({reference})"),
        unreferenced: |sha256| {
            format!(
                "present, sha256 {sha256}, but nothing to compare it with (no published or recorded hash)"
            )
        },
        missing_file: "MISSING (run `zimage models fetch`)",
        wrong_size: |actual, expected| {
            format!(
                "WRONG SIZE: {actual} bytes, expected {expected} (run `zimage models fetch` to replace it)"
            )
        },
        wrong_hash: |actual, expected, reference| {
            format!(
                "WRONG SHA256: {actual}, expected {expected} ({reference}) (run `zimage models fetch` to replace it)"
            )
        },
        failed_verification: |problems, total, set| {
            format!("{problems} of {total} model files of set `{set}` failed verification")
        },
        all_verified: |count, set| format!("All {count} files of set `{set}` verified."),
        model_set: |name, description| format!("Model set `{name}`: {description}"),
        other_sets: |names| format!("(other sets: {names}; choose with --set or ZIMAGE_MODEL_SET)"),
        models_folder: |path| format!("Models folder: {path}"),
        size_unknown: "size unknown",
        present_checked: "present, checked",
        present_unchecked: "present, not checked yet",
        partly_downloaded: |size| format!("partly downloaded ({size})"),
        missing: "missing",
        pinned: "pinned",
        follows_branch: "follows the branch",
        follows_branch_at: |commit| format!("follows the branch; downloaded at commit {commit}"),
        from: "from",
        gateway_settings: |set| format!("Gateway settings for set `{set}`:"),
        loras_in_place: |count| format!("All {count} LoRAs of the manifest are in place."),
        loras_verified: |count| format!("All {count} LoRAs of the manifest verified."),
        loras_failed: |problems, total| {
            format!("{problems} of {total} LoRAs of the manifest failed verification")
        },
        loras_heading: "LoRAs in models/loras (for every set):",
        lora_role: "LoRA",
        not_in_manifest: "in the folder, not in the manifest",
        lora_added: |id, file, manifest| format!("Added LoRA `{id}` ({file}) to {manifest}."),
        lora_fetch_hint: "Run `zimage models fetch` to download it into models/loras (checked against its sha256).",
    };

    pub const ZH_CN: Cli = Cli {
        already_in_place: "已就位",
        checked_in_place: "已存在并通过校验",
        downloaded: |size| format!("已下载（{size}）"),
        fetched: |path, what, sha256, source| format!("{path}：{what}；sha256 {sha256}（{source}）"),
        all_in_place: |count, set| format!("模型集 `{set}` 的全部 {count} 个文件均已就位。"),
        verified_ok: |sha256, reference| format!("正常，sha256 {sha256}（{reference}）"),
        unreferenced: |sha256| format!("存在，sha256 {sha256}，但没有可比对的哈希（未公布也未记录）"),
        missing_file: "缺失（请运行 `zimage models fetch`）",
        wrong_size: |actual, expected| {
            format!("大小不对：{actual} 字节，应为 {expected}（运行 `zimage models fetch` 替换它）")
        },
        wrong_hash: |actual, expected, reference| {
            format!(
                "SHA256 不对：{actual}，应为 {expected}（{reference}）（运行 `zimage models fetch` 替换它）"
            )
        },
        failed_verification: |problems, total, set| {
            format!("模型集 `{set}` 的 {total} 个模型文件中有 {problems} 个未通过校验")
        },
        all_verified: |count, set| format!("模型集 `{set}` 的全部 {count} 个文件均已通过校验。"),
        model_set: |name, description| format!("模型集 `{name}`：{description}"),
        other_sets: |names| format!("（其他模型集：{names}；用 --set 或 ZIMAGE_MODEL_SET 选择）"),
        models_folder: |path| format!("模型文件夹：{path}"),
        size_unknown: "大小未知",
        present_checked: "已存在，已校验",
        present_unchecked: "已存在，尚未校验",
        partly_downloaded: |size| format!("部分下载（{size}）"),
        missing: "缺失",
        pinned: "固定版本",
        follows_branch: "跟随分支",
        follows_branch_at: |commit| format!("跟随分支；下载时的提交为 {commit}"),
        from: "来自",
        gateway_settings: |set| format!("模型集 `{set}` 对应的网关设置："),
        loras_in_place: |count| format!("清单中的全部 {count} 个 LoRA 均已就位。"),
        loras_verified: |count| format!("清单中的全部 {count} 个 LoRA 均已通过校验。"),
        loras_failed: |problems, total| format!("清单中的 {total} 个 LoRA 中有 {problems} 个未通过校验"),
        loras_heading: "models/loras 中的 LoRA（所有模型集通用）：",
        lora_role: "LoRA",
        not_in_manifest: "在文件夹中，不在清单里",
        lora_added: |id, file, manifest| format!("已将 LoRA `{id}`（{file}）加入 {manifest}。"),
        lora_fetch_hint: "运行 `zimage models fetch` 把它下载到 models/loras（按其 sha256 校验）。",
    };

    /// The words of `lang`.
    pub const fn of(lang: Lang) -> &'static Cli {
        match lang {
            Lang::En => &Cli::EN,
            Lang::ZhCn => &Cli::ZH_CN,
        }
    }
}

/// What `zimage generate` prints for people, in one language (ids, seeds, file names and the studio's
/// own sentences stay as they are).
#[derive(Debug)]
pub struct Generate {
    pub unreachable: fn(&str, &str) -> String,
    pub refused: fn(&str, &str) -> String,
    pub field_note: fn(&str) -> String,
    pub unexpected: fn(&str, u16, &str) -> String,
    pub job_failed: fn(&str, &str, &str) -> String,
    pub job_cancelled: fn(&str) -> String,
    pub lost: fn(&str, &str) -> String,
    pub not_an_image: fn(&str, &str) -> String,
    pub bad_server: fn(&str) -> String,
    pub cannot_write: fn(&str, &str) -> String,
    /// A file given with --from or --mask could not be read: its path and why.
    pub cannot_read: fn(&str, &str) -> String,
    pub doing_upload_picture: &'static str,
    pub doing_upload_mask: &'static str,
    pub hint_no_secret: &'static str,
    pub hint_wrong_secret: &'static str,
    pub hint_address: &'static str,
    pub doing_start: &'static str,
    pub doing_show: &'static str,
    pub doing_cancel: &'static str,
    pub doing_image: &'static str,
    pub doing_follow: &'static str,
    pub interrupted: &'static str,
    pub cancelling_others: &'static str,
    pub cancelled_note: fn(&str) -> String,
    pub cannot_cancel: fn(&str, &str) -> String,
    pub cancel_timed_out: &'static str,
    pub seed_label: fn(u64) -> String,
    pub seed_label_of: fn(usize, u32, u64) -> String,
    pub bar_template: &'static str,
    pub submitted: &'static str,
    pub job_submitted: fn(&str) -> String,
    pub queued: fn(u32) -> String,
    pub retrying: fn(u32, &str) -> String,
    pub running: &'static str,
    pub sampling: &'static str,
    pub decoding: &'static str,
    pub step: fn(u32, u32) -> String,
    pub downloading: &'static str,
    pub studio_restarting: &'static str,
    pub saved: fn(&str) -> String,
    pub stream_ended: &'static str,
    pub studio_restarted: &'static str,
}

impl Generate {
    pub const EN: Generate = Generate {
        unreachable: |server, source| format!("cannot reach the studio at {server}: {source}"),
        refused: |doing, rest| format!("the studio refused to {doing}: {rest}"),
        field_note: |field| format!(" (field `{field}`)"),
        unexpected: |doing, status, text| {
            format!(
                "the studio answered {status} to the request to {doing}, which this command cannot read: {text}"
            )
        },
        job_failed: |id, message, code| format!("job {id} failed: {message} ({code})"),
        job_cancelled: |id| format!("job {id} was cancelled on the studio"),
        lost: |id, reason| format!("lost the studio while following job {id}: {reason}"),
        not_an_image: |id, reason| format!("the image of job {id} is not a whole PNG: {reason}"),
        bad_server: |server| format!("--server must be an http:// or https:// address, not {server}"),
        cannot_write: |path, source| format!("cannot write {path}: {source}"),
        cannot_read: |path, source| format!("cannot read {path}: {source}"),
        doing_upload_picture: "take the picture",
        doing_upload_mask: "take the mask",
        hint_no_secret: " Pass the studio's access secret with --password or ZIMAGE_PASSWORD.",
        hint_wrong_secret: " Check the secret given with --password or ZIMAGE_PASSWORD.",
        hint_address: " The studio's ZIMAGE_ALLOW decides which addresses may come in.",
        doing_start: "start the job",
        doing_show: "show the job",
        doing_cancel: "cancel the job",
        doing_image: "send the image",
        doing_follow: "follow the job",
        interrupted: "interrupted; cancelling on the studio...",
        cancelling_others: "cancelling the other jobs on the studio...",
        cancelled_note: |id| format!("job {id} cancelled"),
        cannot_cancel: |id, error| format!("could not cancel job {id}: {error}"),
        cancel_timed_out: "the studio did not answer the cancellation in time",
        seed_label: |seed| format!("seed {seed}"),
        seed_label_of: |index, count, seed| format!("[{index}/{count}] seed {seed}"),
        bar_template: "{prefix} [{bar:20}] step {pos}/{len}  ETA {eta:<3} {wide_msg}",
        submitted: "submitted",
        job_submitted: |id| format!("job {id} submitted"),
        queued: |position| format!("queued, #{position} in line"),
        retrying: |attempt, reason| format!("retrying ({attempt}): {reason}"),
        running: "running",
        sampling: "sampling",
        decoding: "decoding",
        step: |step, total| format!("step {step}/{total}"),
        downloading: "downloading",
        studio_restarting: "studio restarting",
        saved: |file| format!("saved {file}"),
        stream_ended: "the event stream ended before the job did",
        studio_restarted: "the studio restarted",
    };

    pub const ZH_CN: Generate = Generate {
        unreachable: |server, source| format!("无法连接位于 {server} 的工作室：{source}"),
        refused: |doing, rest| format!("工作室拒绝{doing}：{rest}"),
        field_note: |field| format!("（字段 `{field}`）"),
        unexpected: |doing, status, text| {
            format!("工作室对{doing}的请求回答了 {status}，本命令无法读取：{text}")
        },
        job_failed: |id, message, code| format!("任务 {id} 失败：{message}（{code}）"),
        job_cancelled: |id| format!("任务 {id} 已在工作室中被取消"),
        lost: |id, reason| format!("跟踪任务 {id} 时与工作室失去联系：{reason}"),
        not_an_image: |id, reason| format!("任务 {id} 的图像不是完整的 PNG：{reason}"),
        bad_server: |server| format!("--server 必须是 http:// 或 https:// 地址，而不是 {server}"),
        cannot_write: |path, source| format!("无法写入 {path}：{source}"),
        cannot_read: |path, source| format!("无法读取 {path}：{source}"),
        doing_upload_picture: "接收图片",
        doing_upload_mask: "接收蒙版",
        hint_no_secret: " 请用 --password 或 ZIMAGE_PASSWORD 提供工作室的访问密钥。",
        hint_wrong_secret: " 请检查 --password 或 ZIMAGE_PASSWORD 给出的密钥。",
        hint_address: " 工作室的 ZIMAGE_ALLOW 决定哪些地址可以进入。",
        doing_start: "启动任务",
        doing_show: "显示任务",
        doing_cancel: "取消任务",
        doing_image: "发送图像",
        doing_follow: "跟踪任务",
        interrupted: "已中断；正在工作室中取消……",
        cancelling_others: "正在工作室中取消其他任务……",
        cancelled_note: |id| format!("任务 {id} 已取消"),
        cannot_cancel: |id, error| format!("无法取消任务 {id}：{error}"),
        cancel_timed_out: "工作室没有及时回应取消",
        seed_label: |seed| format!("种子 {seed}"),
        seed_label_of: |index, count, seed| format!("[{index}/{count}] 种子 {seed}"),
        bar_template: "{prefix} [{bar:20}] 第 {pos}/{len} 步  剩余 {eta:<3} {wide_msg}",
        submitted: "已提交",
        job_submitted: |id| format!("任务 {id} 已提交"),
        queued: |position| format!("排队中，第 {position} 位"),
        retrying: |attempt, reason| format!("重试（{attempt}）：{reason}"),
        running: "运行中",
        sampling: "采样中",
        decoding: "解码中",
        step: |step, total| format!("第 {step}/{total} 步"),
        downloading: "下载中",
        studio_restarting: "工作室正在重启",
        saved: |file| format!("已保存 {file}"),
        stream_ended: "任务结束前事件流就断开了",
        studio_restarted: "工作室已重启",
    };

    pub const fn of(lang: Lang) -> &'static Generate {
        match lang {
            Lang::En => &Generate::EN,
            Lang::ZhCn => &Generate::ZH_CN,
        }
    }
}

/// What `zimage bench`, `zimage backup` and `zimage restore` print for people, in one language (numbers,
/// file and node names stay as they are).
#[derive(Debug)]
pub struct Report {
    pub version_unknown: &'static str,
    pub on_cpu: &'static str,
    pub unknown_device: &'static str,
    pub device: fn(&str, &str, &str, &str) -> String,
    pub backend: fn(&str, &str, &str) -> String,
    pub setup: fn(&str, &str, &str, u32, u32, u32, u32) -> String,
    pub run: fn(usize, u32, bool, f64) -> String,
    pub stage: &'static str,
    pub cold_run: &'static str,
    pub first_run: &'static str,
    pub warm_median: &'static str,
    pub warm_min: &'static str,
    pub warm_max: &'static str,
    /// Stage labels, in `bench::Stage::ALL`'s order.
    pub stages: [&'static str; 11],
    pub vram: fn(&str, &str, &str) -> String,
    pub written: fn(&str) -> String,
    pub backed_up: fn(usize, &str, usize, usize, usize) -> String,
    pub restored: fn(usize, &str) -> String,
}

impl Report {
    pub const EN: Report = Report {
        version_unknown: "(version unknown)",
        on_cpu: "\nWarning: ComfyUI runs on the CPU, so expect minutes per image; docs/deployment.md shows how to give its container the GPU.",
        unknown_device: "an unknown device",
        device: |name, kind, free, total| format!("{name} ({kind}), {free} of {total} VRAM free"),
        backend: |version, url, device| format!("ComfyUI {version} at {url}: {device}"),
        setup: |unet, encoder, vae, width, height, steps, runs| {
            format!("Models: {unet}, {encoder}, {vae}\nImage {width}x{height}, {steps} steps, {runs} runs")
        },
        run: |index, runs, cold, seconds| {
            format!(
                "run {index} of {runs}{}: {seconds:.2} s end to end",
                if cold { " (cold)" } else { "" }
            )
        },
        stage: "stage",
        cold_run: "cold run",
        first_run: "first run",
        warm_median: "warm median",
        warm_min: "warm min",
        warm_max: "warm max",
        stages: [
            "queue wait",
            "model loading (loader nodes)",
            "text encoding",
            "sampling, all steps",
            "  to the first step",
            "  per step (steady)",
            "decoding (VAE)",
            "saving (PNG)",
            "other nodes",
            "image transfer",
            "end to end",
        ],
        vram: |before, after, total| format!("\nVRAM free: {before} before, {after} after (of {total})"),
        written: |path| format!("Numbers written to {path}."),
        backed_up: |records, dir, copied, kept, removed| {
            format!(
                "backed up {records} images into {dir} ({copied} copied, {kept} already there, {removed} removed)"
            )
        },
        restored: |records, dir| format!("restored {records} images into {dir}"),
    };

    pub const ZH_CN: Report = Report {
        version_unknown: "（版本未知）",
        on_cpu: "\n警告：ComfyUI 在 CPU 上运行，每张图像需要几分钟；docs/deployment.md 说明了如何让它的容器使用 GPU。",
        unknown_device: "未知设备",
        device: |name, kind, free, total| format!("{name}（{kind}），显存 {total} 中空闲 {free}"),
        backend: |version, url, device| format!("ComfyUI {version}，位于 {url}：{device}"),
        setup: |unet, encoder, vae, width, height, steps, runs| {
            format!("模型：{unet}、{encoder}、{vae}\n图像 {width}x{height}，{steps} 步，运行 {runs} 次")
        },
        run: |index, runs, cold, seconds| {
            format!(
                "第 {index} 次运行（共 {runs} 次）{}：端到端 {seconds:.2} 秒",
                if cold { "（冷启动）" } else { "" }
            )
        },
        stage: "阶段",
        cold_run: "冷启动运行",
        first_run: "首次运行",
        warm_median: "热运行中位数",
        warm_min: "热运行最小",
        warm_max: "热运行最大",
        stages: [
            "排队等待",
            "加载模型（加载节点）",
            "文本编码",
            "采样，全部步数",
            "  到第一步",
            "  每步（稳定）",
            "解码（VAE）",
            "保存（PNG）",
            "其他节点",
            "图像传输",
            "端到端",
        ],
        vram: |before, after, total| format!("\n空闲显存：之前 {before}，之后 {after}（共 {total}）"),
        written: |path| format!("数据已写入 {path}。"),
        backed_up: |records, dir, copied, kept, removed| {
            format!(
                "已将 {records} 张图像备份到 {dir}（复制 {copied} 张，已有 {kept} 张，移除 {removed} 张）"
            )
        },
        restored: |records, dir| format!("已将 {records} 张图像恢复到 {dir}"),
    };

    pub const fn of(lang: Lang) -> &'static Report {
        match lang {
            Lang::En => &Report::EN,
            Lang::ZhCn => &Report::ZH_CN,
        }
    }
}

/// The language of a POSIX locale (`zh_CN.UTF-8`, `en_US`, `C`): any `zh` is Chinese, the rest English.
pub fn lang_of_posix_locale(locale: &str) -> Lang {
    let primary = locale.split(['_', '.', '@', '-']).next().unwrap_or_default();
    if primary.eq_ignore_ascii_case("zh") {
        Lang::ZhCn
    } else {
        Lang::En
    }
}

/// A side's name in Chinese (the JSON names stay as they are in `field`).
fn side_name(field: &str) -> &str {
    match field {
        "width" => "宽度",
        "height" => "高度",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_cjk(text: &str) -> bool {
        text.chars().any(|c| matches!(c, '\u{4e00}'..='\u{9fff}'))
    }

    #[test]
    fn the_bench_and_backup_reports_speak_both_languages() {
        let sample = |say: &Report| {
            let mut texts = vec![
                (say.run)(1, 4, true, 3.2),
                (say.backed_up)(3, "dir", 1, 2, 0),
                (say.restored)(3, "dir"),
                (say.vram)("1", "2", "3"),
                say.stage.to_owned(),
                say.warm_median.to_owned(),
            ];
            texts.extend(say.stages.iter().map(|stage| (*stage).to_owned()));
            texts
        };
        for text in sample(&Report::EN) {
            assert!(!has_cjk(&text), "{text}");
        }
        for text in sample(&Report::ZH_CN) {
            assert!(has_cjk(&text), "{text}");
        }
    }

    #[test]
    fn zimage_generate_speaks_both_languages() {
        let sample = |say: &Generate| {
            vec![
                (say.refused)(say.doing_start, "x"),
                (say.queued)(2),
                (say.retrying)(1, "x"),
                (say.step)(3, 8),
                (say.saved)("fox.png"),
                (say.job_failed)("id", "x", "code"),
                say.interrupted.to_owned(),
                say.hint_no_secret.to_owned(),
                say.sampling.to_owned(),
                say.stream_ended.to_owned(),
            ]
        };
        for text in sample(&Generate::EN) {
            assert!(!has_cjk(&text), "{text}");
        }
        for text in sample(&Generate::ZH_CN) {
            assert!(has_cjk(&text), "{text}");
        }
        assert_eq!(
            (Generate::EN.refused)(Generate::EN.doing_start, "No."),
            "the studio refused to start the job: No."
        );
        // The progress bar's template keeps indicatif's placeholders in both languages.
        for say in [&Generate::EN, &Generate::ZH_CN] {
            for key in ["{prefix}", "{bar:20}", "{pos}", "{len}", "{eta:<3}", "{wide_msg}"] {
                assert!(say.bar_template.contains(key), "{key}");
            }
        }
    }

    #[test]
    fn rules_read_in_both_languages_and_count_characters() {
        let rule = Rule::PromptTooLong { length: 2001 };
        assert_eq!(
            Text::EN.rule(rule, "prompt"),
            "The prompt is 2001 characters long; the limit is 2000."
        );
        assert_eq!(
            Text::ZH_CN.rule(rule, "prompt"),
            "提示词有 2001 个字符，上限是 2000 个。"
        );
        assert_eq!(
            Text::ZH_CN.rule(Rule::SideNotAStep, "width"),
            "宽度必须是 16 像素的整数倍。"
        );
        assert_eq!(Text::of(Lang::ZhCn).prompt_empty, Text::ZH_CN.prompt_empty);
    }

    #[test]
    fn the_terminal_language_comes_from_the_posix_locale() {
        assert_eq!(lang_of_posix_locale("zh_CN.UTF-8"), Lang::ZhCn);
        assert_eq!(lang_of_posix_locale("zh_TW"), Lang::ZhCn);
        assert_eq!(lang_of_posix_locale("en_US.UTF-8"), Lang::En);
        assert_eq!(lang_of_posix_locale("C.UTF-8"), Lang::En);
        assert_eq!(lang_of_posix_locale(""), Lang::En);
        assert_eq!(
            (Cli::ZH_CN.all_verified)(3, "light"),
            "模型集 `light` 的全部 3 个文件均已通过校验。"
        );
    }
}
