//! `codes list|show|update|reset` and `once-code`: the API, directly
//! (`once-code --broker`: through the operator's broker instead).

use super::broker_client::{self, BrokerClientArgs, BrokerError};
use super::connection_args::ConnectionArgs;
use super::output::{OutputFormat, structured, table};
use super::parsers;
use crate::metastudio::client::TransportError;
use crate::metastudio::{ActiveCode, ApiError, ConnectionError, MetaStudioClient, Transport};
use clap::{Args, Subcommand};
use jiff::Timestamp;
use serde::Serialize;

#[derive(Debug, Subcommand)]
pub enum CodesCommand {
    /// List a robot's activation codes (every page).
    List {
        /// Application (robot) id.
        #[arg(long, value_parser = parsers::non_empty)]
        robot_id: String,
        /// Only codes of this interactive dialog.
        #[arg(long, value_parser = parsers::non_empty)]
        room_id: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Show one activation code.
    Show {
        /// Activation code id.
        #[arg(value_parser = parsers::non_empty)]
        id: String,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Set a code's validity in days (0 = permanent); the window restarts now.
    Update {
        /// Activation code id.
        #[arg(value_parser = parsers::non_empty)]
        id: String,
        /// Days, 0..=65535 (0 = permanent).
        #[arg(long, value_parser = parsers::days, allow_negative_numbers = true)]
        valid_period: u16,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Reset a code: mint a new value for it (not idempotent).
    Reset {
        /// Activation code id.
        #[arg(value_parser = parsers::non_empty)]
        id: String,
        /// Keep the authentication credentials of devices already using the code.
        #[arg(long)]
        keep_auth_credential: bool,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Print the activation code values (hidden by default).
    #[arg(long)]
    pub show_codes: bool,
}

#[derive(Debug, Args)]
pub struct OnceCodeArgs {
    /// Print JSON instead of the bare code: `{"once_code": ...}` from the
    /// API, the broker's `{"onceCode", "expiresAt", "requestId"}` with --broker.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub broker: BrokerClientArgs,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// What can make a direct command fail.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

impl CommandError {
    /// Whether the settings could not work, so nothing was sent.
    pub fn is_bad_input(&self) -> bool {
        match self {
            Self::Connection(_) => true,
            Self::Broker(err) => err.is_bad_input(),
            Self::Transport(_) | Self::Api(_) => false,
        }
    }
}

fn client(args: &ConnectionArgs) -> Result<MetaStudioClient, CommandError> {
    let credentials = args
        .credentials()?
        .ok_or(ConnectionError::MissingCredentials)?;
    let connection = args.settings().resolve(credentials)?;
    Ok(Transport::new(args.client.options())?.client(connection))
}

/// A code as printed: the value only with `--show-codes`.
#[derive(Serialize)]
struct CodeView<'a> {
    active_code_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    active_code: Option<&'a str>,
    robot_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    room_id: Option<&'a str>,
    valid_period: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    expire_time: Option<Timestamp>,
    create_time: Timestamp,
    update_time: Timestamp,
}

impl<'a> CodeView<'a> {
    fn new(code: &'a ActiveCode, show_code: bool) -> Self {
        Self {
            active_code_id: &code.active_code_id,
            active_code: show_code.then(|| code.active_code.expose()),
            robot_id: &code.robot_id,
            room_id: code.room_id.as_deref(),
            valid_period: code.valid_period,
            expire_time: code.expire_time,
            create_time: code.create_time,
            update_time: code.update_time,
        }
    }
}

/// A list of codes: a JSON/YAML list, or a table.
fn render(codes: &[ActiveCode], output: &OutputArgs) -> String {
    let views: Vec<CodeView> = codes
        .iter()
        .map(|c| CodeView::new(c, output.show_codes))
        .collect();
    structured(output.format, &views).unwrap_or_else(|| render_table(&views, output))
}

/// One code (show, update, reset): a JSON/YAML object, or a one-row table.
fn render_one(code: &ActiveCode, output: &OutputArgs) -> String {
    let view = CodeView::new(code, output.show_codes);
    structured(output.format, &view)
        .unwrap_or_else(|| render_table(std::slice::from_ref(&view), output))
}

fn render_table(views: &[CodeView], output: &OutputArgs) -> String {
    let mut headers = vec!["ID", "ROOM", "VALID(DAYS)", "EXPIRES", "UPDATED"];
    if output.show_codes {
        headers.push("CODE");
    }
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            let mut row = vec![
                v.active_code_id.to_owned(),
                v.room_id.unwrap_or("-").to_owned(),
                v.valid_period.to_string(),
                v.expire_time.map_or("never".into(), |t| t.to_string()),
                v.update_time.to_string(),
            ];
            if let Some(code) = v.active_code {
                row.push(code.to_owned());
            }
            row
        })
        .collect();
    table(&headers, &rows)
}

/// Runs a `codes` subcommand and returns what to print.
pub async fn run_codes(command: CodesCommand) -> Result<String, CommandError> {
    match command {
        CodesCommand::List {
            robot_id,
            room_id,
            output,
            connection,
        } => {
            let codes = client(&connection)?
                .list_all(&robot_id, room_id.as_deref())
                .await?;
            Ok(render(&codes, &output))
        }
        CodesCommand::Show {
            id,
            output,
            connection,
        } => {
            let code = client(&connection)?.show(&id).await?.value;
            Ok(render_one(&code, &output))
        }
        CodesCommand::Update {
            id,
            valid_period,
            output,
            connection,
        } => {
            let code = client(&connection)?.update(&id, valid_period).await?.value;
            Ok(render_one(&code, &output))
        }
        CodesCommand::Reset {
            id,
            keep_auth_credential,
            output,
            connection,
        } => {
            let code = client(&connection)?
                .reset(&id, !keep_auth_credential)
                .await?
                .value;
            Ok(render_one(&code, &output))
        }
    }
}

/// Runs `once-code` and returns what to print: the code itself, which is
/// the point of the command. With `--broker`, the broker gets it.
pub async fn run_once_code(args: OnceCodeArgs) -> Result<String, CommandError> {
    if let Some(request) = args.broker.request(args.connection.client.timeout.0) {
        return Ok(broker_client::once_code(request, args.json).await?);
    }
    let once = client(&args.connection)?.once_code().await?.value;
    Ok(if args.json {
        serde_json::to_string(&once).expect("serialises") + "\n"
    } else {
        format!("{}\n", once.once_code.expose())
    })
}
