//! Attribute macros of `tarn-tracing` (use them through `tarn_tracing`, not directly):
//!
//! - `#[span_fn]` / `#[span_fn("name")]`: records a function as a span — a thread span for
//!   a plain function, an async span for an `async fn` (or an `#[async_trait]` method, whose
//!   body returns a pinned boxed future).
//! - `#[main]`: replaces `#[tokio::main]`: starts telemetry from the environment, runs the
//!   `async fn main` on a tokio runtime, flushes on return.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{quote, quote_spanned};
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Expr, ItemFn, Lit, LitStr, MetaNameValue, ReturnType, Token, Type, parse_macro_input};

/// Records the function as a span named `module::function` (or the given name).
///
/// A plain function gets a thread span covering its body. An `async fn` gets an async span
/// from its first poll to its completion (or cancellation), with the async span polling it
/// as parent. A function returning `Pin<Box<dyn Future ...>>` (what `#[async_trait]`
/// generates) gets an async span around the returned future.
#[proc_macro_attribute]
pub fn span_fn(args: TokenStream, item: TokenStream) -> TokenStream {
    let name: Option<LitStr> = if args.is_empty() {
        None
    } else {
        match syn::parse::<LitStr>(args) {
            Ok(n) => Some(n),
            Err(e) => return e.to_compile_error().into(),
        }
    };
    let mut function = parse_macro_input!(item as ItemFn);
    let ident = function.sig.ident.to_string();
    let name = match name {
        Some(n) => quote!(#n),
        None => quote!(concat!(module_path!(), "::", #ident)),
    };
    let block = &function.block;
    let span = block.span();
    let body: TokenStream2 = if function.sig.asyncness.is_some() {
        // The output type helps inference of `?` and `return` inside the async block.
        let output = match &function.sig.output {
            ReturnType::Default => Some(quote!(())),
            ReturnType::Type(_, ty) if !matches!(**ty, Type::ImplTrait(_)) => Some(quote!(#ty)),
            ReturnType::Type(..) => None,
        };
        let inner = match output {
            Some(ty) => quote_spanned! {span=>
                async move {
                    let __tarn_output: #ty = #block;
                    __tarn_output
                }
            },
            None => quote_spanned!(span=> async move #block),
        };
        quote_spanned! {span=>
            {
                ::tarn_tracing::InstrumentedFuture::new(
                    #inner,
                    ::tarn_tracing::static_span_desc!(#name),
                )
                .await
            }
        }
    } else if returns_boxed_future(&function.sig.output) {
        quote_spanned! {span=>
            {
                ::std::boxed::Box::pin(::tarn_tracing::InstrumentedFuture::new(
                    #block,
                    ::tarn_tracing::static_span_desc!(#name),
                ))
            }
        }
    } else {
        quote_spanned! {span=>
            {
                ::tarn_tracing::span_scope!(#name);
                #block
            }
        }
    };
    match syn::parse2(body) {
        Ok(b) => {
            *function.block = b;
            quote!(#function).into()
        }
        Err(e) => e.to_compile_error().into(),
    }
}

/// `Pin<Box<dyn Future ...>>` (what `#[async_trait]` makes of an `async fn`).
fn returns_boxed_future(output: &ReturnType) -> bool {
    let ReturnType::Type(_, ty) = output else {
        return false;
    };
    let Type::Path(path) = &**ty else {
        return false;
    };
    let Some(last) = path.path.segments.last() else {
        return false;
    };
    last.ident == "Pin" && quote!(#ty).to_string().contains("Future")
}

/// Replaces `#[tokio::main]` on `async fn main`: starts telemetry (settings from the
/// environment: `TARN_TELEMETRY_URL`, `TARN_TELEMETRY_API_KEY`, ...; service name and version
/// from Cargo; logs on the console at `info`), runs the body on a tokio runtime and flushes
/// when it returns.
///
/// Arguments: `flavor = "multi_thread" | "current_thread"`, `worker_threads = N`.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    let parser = syn::punctuated::Punctuated::<MetaNameValue, Token![,]>::parse_terminated;
    let args = match parser.parse(args) {
        Ok(a) => a,
        Err(e) => return e.to_compile_error().into(),
    };
    let mut current_thread = false;
    let mut workers: Option<Expr> = None;
    for arg in args {
        let key = arg
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        match key.as_str() {
            "flavor" => match &arg.value {
                Expr::Lit(l) => match &l.lit {
                    Lit::Str(s) if s.value() == "current_thread" => current_thread = true,
                    Lit::Str(s) if s.value() == "multi_thread" => current_thread = false,
                    _ => {
                        return syn::Error::new(
                            arg.value.span(),
                            "flavor is \"multi_thread\" or \"current_thread\"",
                        )
                        .to_compile_error()
                        .into();
                    }
                },
                _ => {
                    return syn::Error::new(arg.value.span(), "flavor is a string")
                        .to_compile_error()
                        .into();
                }
            },
            "worker_threads" => workers = Some(arg.value.clone()),
            _ => {
                return syn::Error::new(
                    arg.path.span(),
                    "unknown argument (flavor, worker_threads)",
                )
                .to_compile_error()
                .into();
            }
        }
    }
    let mut function = parse_macro_input!(item as ItemFn);
    if function.sig.asyncness.is_none() {
        return syn::Error::new(
            function.sig.fn_token.span(),
            "#[tarn_tracing::main] goes on `async fn main`",
        )
        .to_compile_error()
        .into();
    }
    function.sig.asyncness = None;
    let block = &function.block;
    let builder = if current_thread {
        quote!(::tarn_tracing::__private::tokio::runtime::Builder::new_current_thread())
    } else {
        let workers = workers.map(|w| quote!(.worker_threads(#w)));
        quote!(::tarn_tracing::__private::tokio::runtime::Builder::new_multi_thread() #workers)
    };
    let body = quote! {
        {
            let __tarn_telemetry = ::tarn_tracing::__private::start_for_main(
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION"),
            );
            let __tarn_output = #builder
                .enable_all()
                .build()
                .expect("the tokio runtime starts")
                .block_on(async move #block);
            ::std::mem::drop(__tarn_telemetry);
            __tarn_output
        }
    };
    match syn::parse2(body) {
        Ok(b) => {
            *function.block = b;
            quote!(#function).into()
        }
        Err(e) => e.to_compile_error().into(),
    }
}
