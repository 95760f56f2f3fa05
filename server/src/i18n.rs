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
    pub unknown_model: fn(&str) -> String,
    pub image_count: fn(u32) -> String,
    pub size_or_ratio: &'static str,
    pub seeds_range: fn(u32, u64) -> String,
    pub size_format: fn(u32, u32, u32) -> String,
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
    pub last_event_id: &'static str,
    // The studio's state.
    /// Wraps readiness's explanation (it names ComfyUI's address and the technical reason).
    pub not_ready: fn(&str) -> String,
    pub restarting: &'static str,
    pub disk_full: &'static str,
    pub storage_unavailable: &'static str,
    pub internal: &'static str,
    pub queue_full: fn(usize) -> String,
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
        unknown_model: |offered| {
            format!("The studio has no model of that name; the one it offers is {offered:?}.")
        },
        image_count: |most| format!("n must be between 1 and {most}."),
        size_or_ratio: "Give either a size or an aspect ratio, not both.",
        seeds_range: |count, most| format!("The seeds of the {count} images must stay between 0 and {most}."),
        size_format: |least, most, step| {
            format!(
                "The size must be \"auto\" or WIDTHxHEIGHT, e.g. \"1024x576\" (sides of {least} to {most} pixels in steps of {step})."
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
        last_event_id: "Last-Event-ID must be the id of an event this stream sent.",
        not_ready: str::to_owned,
        restarting: "The studio is restarting; try again in a few seconds.",
        disk_full: "The disk holding the studio's images is full; delete some images or free space, then try again.",
        storage_unavailable: "The studio cannot write to its data folder; the log has the details.",
        internal: "Something went wrong inside the studio; the log has the details.",
        queue_full: |unfinished| {
            format!(
                "The studio already has {unfinished} jobs waiting or running; try again when some have finished."
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
        unknown_model: |offered| format!("工作室没有这个名字的模型；它提供的是 {offered:?}。"),
        image_count: |most| format!("n 必须在 1 到 {most} 之间。"),
        size_or_ratio: "尺寸和宽高比只能给一个。",
        seeds_range: |count, most| format!("{count} 张图像的种子必须都在 0 到 {most} 之间。"),
        size_format: |least, most, step| {
            format!(
                "尺寸必须是 \"auto\" 或 宽x高，例如 \"1024x576\"（每边 {least} 到 {most} 像素，以 {step} 为步长）。"
            )
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
        last_event_id: "Last-Event-ID 必须是这个事件流发送过的事件 id。",
        not_ready: |detail| format!("工作室暂时不能生成图片（ComfyUI 未就绪）：{detail}"),
        restarting: "工作室正在重启，请几秒后再试。",
        disk_full: "存放图片的磁盘已满；请删除一些图片或释放空间后再试。",
        storage_unavailable: "工作室无法写入数据文件夹；详情见日志。",
        internal: "工作室内部出错了；详情见日志。",
        queue_full: |unfinished| format!("工作室已有 {unfinished} 个任务在排队或运行；请等一些完成后再试。"),
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
            Rule::UnknownModel => (self.unknown_model)(zimage_contract::openai::MODEL_ID),
            Rule::ImageCount => (self.image_count)(zimage_contract::openai::MAX_IMAGES),
            Rule::SizeOrRatio => self.size_or_ratio.to_owned(),
            Rule::SeedsOutOfRange { count } => (self.seeds_range)(count, MAX_SEED),
            Rule::SizeFormat => (self.size_format)(MIN_SIDE, MAX_SIDE, SIDE_STEP),
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
    };

    /// The words of `lang`.
    pub const fn of(lang: Lang) -> &'static Cli {
        match lang {
            Lang::En => &Cli::EN,
            Lang::ZhCn => &Cli::ZH_CN,
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
